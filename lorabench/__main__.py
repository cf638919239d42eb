from lorabench.cli import main

raise SystemExit(main())
