import sys

from dicom_triage.jobs.cli import main

sys.exit(main())
