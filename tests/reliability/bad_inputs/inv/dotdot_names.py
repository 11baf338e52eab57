#!/usr/bin/env python3
"""A dynamic inventory whose host name is a path: ../../x (issue 24)."""

import json

print(json.dumps({"web": {"hosts": ["../../x"]}, "_meta": {"hostvars": {}}}))
