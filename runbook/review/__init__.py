"""Plan review (SPEC §12): ``plan --check`` (discover steps run read-only, what depends on
them shown concretely, copy diffs per host), stale-plan refusal, signed approvals."""
