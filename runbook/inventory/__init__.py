"""Hosts and groups from Ansible inventories and the runbook's inline ``hosts:``.

Operators already describe their fleet in Ansible inventories, so runbook reads them as
Ansible does rather than asking for a second copy: INI, YAML, ``ansible-inventory --list``
JSON and ``-y`` YAML exports, executable inventory scripts, ``group_vars/`` and
``host_vars/``, with Ansible's variable precedence. What ``ansible-inventory --list``
shows for a file is what runbook shows (``tests/data/inventories`` pins this against
recorded Ansible output).

One concept per module: ``graph`` (groups, children, cycles, depths, precedence),
``sources`` (which reader a file needs), ``ini``, ``yaml_inv``, ``listing`` (the ``--list``
JSON shape), ``script``, ``vars_dirs``, ``ranges`` (``web[01:10]``), ``hosts``
(``ansible_*`` vars as ``Host`` fields), ``patterns`` (``web:&prod:!web3``), ``text``
(reading files), ``build`` (all of it into an ``Inventory``). Jinja in values is marked
here and rendered lazily by ``runbook.templating.lazy``.
"""
