#!/usr/bin/env bash
# Installs the system packages and the Python distribution this project needs. Idempotent:
# a package that is already there is not fetched again.
set -euo pipefail
PYTHON=${1:-python3}

need_apt=()
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || need_apt+=(dataset-fashion-mnist)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "Installing system packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

"$PYTHON" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]" 2>&1 \
    | grep -v -e "^WARNING: Location" -e "^WARNING: Running pip as" || true
"$PYTHON" -c "import core_ssl, torch; print(f'ssl-toolkit ready: torch {torch.__version__}')"
