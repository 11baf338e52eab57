"""SSH: the context, channels, host sessions, ~/.ssh/config, host keys, paramiko."""
