from pdtui.sim.cli import main

raise SystemExit(main())
