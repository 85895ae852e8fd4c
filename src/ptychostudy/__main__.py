from ptychostudy.cli import main

raise SystemExit(main())
