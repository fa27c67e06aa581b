"""`python -m clipforensics.synthetic`: write the generated FaceForensics-shaped data set."""

from clipforensics.synthetic.write import main

raise SystemExit(main())
