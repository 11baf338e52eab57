"""``copy`` and ``fetch`` steps: files between the controller and hosts (SPEC §5, §8).

- ``spec``: the step's action as written (``FileAction``) and one host's planned transfer
  (``Transfer``), with their plan-file form.
- ``planning``: plan time — paths rendered and checked, the content's size and digest
  (of the stand-in rendering when the template reads a secret), fetch collisions.
- ``template``: a whole file as a Jinja template, errors at the template's own lines.
- ``content``: apply time — the real rendering, in memory, and the saved-plan checks.
- ``scripts``: the small POSIX shell scripts the ``become`` path runs under ``sudo``.
- ``localfs``: transfers on the controller; ``sftp``: over the host's SSH connection.
- ``control``: what every transfer shares — deadline, cancellation, the ``Outcome``.
"""
