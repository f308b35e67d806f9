#!/usr/bin/env bash
# Set up the development environment in .venv (once; again when requirements-dev.txt changes), then
#   bash dev.sh demo   - the main job: DEIS against k-diffusion's samplers on an exact problem
#   bash dev.sh test   - the test suite
#   bash dev.sh python -m benchmarks.overhead   - anything else, inside the environment
set -euo pipefail
cd "$(dirname "$0")"
venv=.venv
stamp=$venv/.requirements-dev.sha1
want=$(sha1sum requirements-dev.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" >"$stamp"
fi
export PYTHONWARNINGS="ignore::UserWarning,ignore::DeprecationWarning"
case "${1:-}" in
  demo) shift; exec "$venv/bin/python" -m benchmarks.demo "$@" ;;
  test) shift; exec "$venv/bin/python" -m pytest -q "$@" ;;
  "") echo "usage: bash dev.sh demo|test|<command>" >&2; exit 2 ;;
  *) exec "$venv/bin/$1" "${@:2}" ;;
esac
