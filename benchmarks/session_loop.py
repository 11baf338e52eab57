"""The bare paramiko loop of ``paramiko_loop.py``, with commands through a host session.

Same shape, same arguments, same output: one ``SSHClient`` per host, a thread per host, a
barrier per step; but each host starts one executor (``runbook.run.ssh.session``) and
every step is one framed request on that channel instead of an ``exec_command``.

    python benchmarks/session_loop.py [--no-nodelay] HOSTS.json KNOWN_HOSTS 'echo a' ...

``--no-nodelay`` leaves Nagle's algorithm on (``open_channel_session`` turns it off by
default), to show what TCP_NODELAY alone is worth.
"""

from __future__ import annotations

import json
import sys
import threading

import paramiko

from runbook.run.ssh.session import SessionRequest, open_channel_session


def main(argv: list[str]) -> int:
    nodelay = "--no-nodelay" not in argv
    hosts_file, known_hosts, *steps = [a for a in argv if a != "--no-nodelay"]
    with open(hosts_file, encoding="utf-8") as f:
        hosts = json.load(f)
    keys = {h["key"]: paramiko.Ed25519Key.from_private_key_file(h["key"]) for h in hosts}
    barrier = threading.Barrier(len(hosts))
    lock = threading.Lock()
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
            session = open_channel_session(client.get_transport(), name=h["name"], nodelay=nodelay)
        except Exception as exc:  # a benchmark: report and let the barrier break
            with lock:
                failures.append(f"{h['name']}: connect: {exc!r}")
            barrier.abort()
            return
        try:
            for step in steps:
                result = session.run(SessionRequest(step))
                with lock:
                    sys.stdout.write(f"{h['name']}: {result.stdout.decode(errors='replace')}")
                    if result.stderr:
                        err = result.stderr.decode(errors="replace")
                        sys.stdout.write(f"{h['name']} stderr: {err}")
                    if result.rc != 0:
                        failures.append(f"{h['name']}: {step!r} exited {result.rc}")
                barrier.wait()
        except threading.BrokenBarrierError:
            pass
        finally:
            session.close()
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
    raise SystemExit(main(sys.argv[1:]))
