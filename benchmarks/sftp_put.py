"""paramiko's own ``SFTPClient.put`` to many hosts at once: the floor for a paramiko
copy. One thread per host: connect, ``open_sftp``, ``put`` (pipelined, size confirmed).

    python benchmarks/sftp_put.py HOSTS.json KNOWN_HOSTS SRC DEST_TEMPLATE

``HOSTS.json`` as for ``paramiko_loop.py``; ``DEST_TEMPLATE`` holds ``{name}``. Exit 1 if
any host failed.
"""

from __future__ import annotations

import json
import sys
import threading

import paramiko


def main(argv: list[str]) -> int:
    hosts_file, known_hosts, src, dest = argv
    with open(hosts_file, encoding="utf-8") as f:
        hosts = json.load(f)
    keys = {h["key"]: paramiko.Ed25519Key.from_private_key_file(h["key"]) for h in hosts}
    failures: list[str] = []

    def worker(h: dict) -> None:
        client = paramiko.SSHClient()
        client.load_host_keys(known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                h["address"],
                h["port"],
                username=h["user"],
                pkey=keys[h["key"]],
                allow_agent=False,
                look_for_keys=False,
                timeout=30,
            )
            sftp = client.open_sftp()
            sftp.put(src, dest.format(name=h["name"]))
            sftp.close()
        except Exception as exc:  # a benchmark: report it
            failures.append(f"{h['name']}: {exc!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for line in failures:
        print(line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
