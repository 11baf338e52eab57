#!/bin/sh
# An old-style Ansible inventory script, written for runbook's tests: `--list` has no
# `_meta`, so each host's vars come from `--host HOST`; groups use the short list form.
case "$1" in
--list)
  echo '{"edge": ["edge1", "edge2"], "core": {"hosts": ["core1"], "vars": {"tier": 1}}}'
  ;;
--host)
  case "$2" in
  edge1) echo '{"ansible_host": "192.0.2.1", "tier": 3}' ;;
  edge2) echo '{}' ;;
  core1) echo '{"ansible_user": "root"}' ;;
  *) echo "unknown host $2" >&2; exit 1 ;;
  esac
  ;;
*) echo "usage: $0 --list | --host HOST" >&2; exit 2 ;;
esac
