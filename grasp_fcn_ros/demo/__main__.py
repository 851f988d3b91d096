"""``python -m grasp_fcn_ros.demo``: the demo (``--help`` lists its options)."""

import sys

from . import main

if __name__ == '__main__':
    sys.exit(main())
