"""Where the package's data files (models, config, demo frames) are found."""

import os

PACKAGE_NAME = 'grasp_fcn'
#: File name of the packaged model in ``models/``.
DEFAULT_MODEL = 'grasp_fcn_cornell.pt'


def share_directory():
    """The package's data folder: the source tree when run from it, else the ament share."""
    source_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(source_root, 'package.xml')):
        return source_root
    try:
        from ament_index_python.packages import get_package_share_directory
        return get_package_share_directory(PACKAGE_NAME)
    except (ImportError, LookupError, ValueError, OSError):
        return source_root


def default_model_path():
    """Path of the packaged model (it may not exist before training)."""
    return os.path.join(share_directory(), 'models', DEFAULT_MODEL)
