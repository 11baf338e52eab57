from runbook.cli import main

raise SystemExit(main())
