# Sourced by the scripts in this folder, from the repository root: creates .venv when it is
# missing, installs requirements.txt when it changed since the last install, activates the
# environment and sets up ROS 2 so that discovery never leaves this machine.

PYTHON=${PYTHON:-python3}
VENV_DIR=${VENV_DIR:-.venv}

if [ ! -x "$VENV_DIR/bin/python" ]; then
  echo "creating $VENV_DIR with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV_DIR"
fi
# shellcheck disable=SC1091
. "$VENV_DIR/bin/activate"

# Reinstall only when requirements.txt (or the interpreter) changed since the last success.
_stamp="$VENV_DIR/.requirements.sha256"
_want=$( { cat requirements.txt; python --version; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  echo "installing requirements.txt into $VENV_DIR"
  python -m pip install --quiet -r requirements.txt
  echo "$_want" > "$_stamp"
fi
unset _stamp _want

# ROS 2 from the PyPI wheels: discovery on this machine only (ROS_LOCALHOST_ONLY is ignored
# by Kilted), a domain of our own unless the caller chose one, and the venv as the ament
# prefix (ament_index_python needs one).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( RANDOM % 100 + 1 ))}
export AMENT_PREFIX_PATH=$VIRTUAL_ENV
