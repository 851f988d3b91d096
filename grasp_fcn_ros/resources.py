"""Where the package's data files (models, config, demo frames) are found."""

import os

PACKAGE_NAME = 'grasp_fcn'
#: File name of the packaged model in ``models/``.
DEFAULT_MODEL = 'grasp_fcn_cornell.pt'
#: Fast DDS profile (shared memory only, 16 MiB segments) in ``config/``.
FASTDDS_SHM_PROFILE = 'fastdds_shm.xml'


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


def fastdds_shm_profile_path():
    """Path of the packaged Fast DDS shared-memory profile (for FASTDDS_DEFAULT_PROFILES_FILE)."""
    return os.path.join(share_directory(), 'config', FASTDDS_SHM_PROFILE)
