"""Where the package's data files (models, config, demo frames) are found."""

import itertools
import os
import sys
import sysconfig

PACKAGE_NAME = 'grasp_fcn'
#: File name of the packaged model in ``models/``.
DEFAULT_MODEL = 'grasp_fcn_cornell.pt'
#: Fast DDS profile (shared memory only, 16 MiB segments) in ``config/``.
FASTDDS_SHM_PROFILE = 'fastdds_shm.xml'


def share_candidates():
    """Folders that may hold the package's data, in the order they are tried.

    1. the source tree, when the code runs from a checkout (``package.xml`` beside it);
    2. the ament index (a colcon workspace, or any prefix on ``AMENT_PREFIX_PATH``);
    3. ``<prefix>/share/grasp_fcn`` of the install scheme the code runs from: a ``pip install``
       into a venv, into the system (``/usr/local`` on Debian) or into the user's site
       (``~/.local``), where setup.py's ``data_files`` land.
    """
    source_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    yield source_root
    try:
        from ament_index_python.packages import get_package_share_directory
        yield get_package_share_directory(PACKAGE_NAME)
    except (ImportError, LookupError, ValueError, OSError):
        pass
    prefixes = [sysconfig.get_path('data'), sys.prefix, sys.exec_prefix]
    try:
        prefixes.append(sysconfig.get_path('data', f'{os.name}_user'))
    except KeyError:
        pass
    seen = set()
    for prefix in prefixes:
        if prefix and prefix not in seen:
            seen.add(prefix)
            yield os.path.join(prefix, 'share', PACKAGE_NAME)


def share_directory():
    """The package's data folder: the first of :func:`share_candidates` that holds
    ``package.xml``, else the source tree (files looked up there are then reported missing by
    their users with the path)."""
    candidates = share_candidates()
    source_root = next(candidates)
    for folder in itertools.chain([source_root], candidates):  # lazily: the first that holds
        if os.path.isfile(os.path.join(folder, 'package.xml')):
            return folder
    return source_root


def default_model_path():
    """Path of the packaged model (it may not exist before training)."""
    return os.path.join(share_directory(), 'models', DEFAULT_MODEL)


def default_calibration_dir():
    """Folder of the bundled real depth frames (``demo/frames``): the default calibration of
    int8 quantisation."""
    return os.path.join(share_directory(), 'demo', 'frames')


def fastdds_shm_profile_path():
    """Path of the packaged Fast DDS shared-memory profile (for FASTDDS_DEFAULT_PROFILES_FILE)."""
    return os.path.join(share_directory(), 'config', FASTDDS_SHM_PROFILE)
