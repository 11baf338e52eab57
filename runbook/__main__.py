from runbook.cli.main import main

raise SystemExit(main())
