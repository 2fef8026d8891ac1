#!/usr/bin/env bash
# Build a virtualenv holding exactly what an image installs, to run its commands here.
#
#   tools/image-venv.sh trainer DIR    # as trainer/Dockerfile: the wheel with [trainer]
#   tools/image-venv.sh operator DIR   # as operator/Dockerfile: the wheel with [operator]
#
# Same steps as the Dockerfiles: build the project's wheel (no deps), install it with the
# image's extra under the same constraints (requirements.lock; for the trainer without
# its CUDA-only lines, torch from the lock's pin: the CPU build of the pyproject pin),
# then run the image's build check (python -m mtd_contract.images IMAGE). Nothing of the
# development virtualenv leaks in. Reruns are cheap: the dependencies are installed again
# only when pyproject.toml or the lock change; otherwise only the wheel is replaced.
set -euo pipefail

usage() { echo "usage: $0 trainer|operator DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
image=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
case "$image" in trainer|operator) ;; *) usage ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
# Debian's interpreter where there is one: an image's Python sits where every uid reaches
# it, and the pod sandbox (tests/support/kubelet.py) runs it as the pod's uid in a root
# of its own (a pyenv under /root is neither reachable nor there).
default_python=python3.11
[ -x /usr/bin/python3.11 ] && default_python=/usr/bin/python3.11
python=${PYTHON:-$default_python}

deps_key=$(cat "$root/pyproject.toml" "$root/requirements.lock" "$0" | cksum | cut -d' ' -f1)
src_key=$(cd "$root" && find contract operator trainer -name '*.py' -o -name 'py.typed' \
  | LC_ALL=C sort | xargs cat | cksum | cut -d' ' -f1)

# One build at a time per folder (parallel test runs share it); a waiting run then finds
# the finished stamp and returns at once.
exec 9>"$dir.lock"
flock 9
if [ -f "$dir/.image-$image-$deps_key-$src_key" ]; then
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The wheel is built from a copy of what the Dockerfiles COPY, so nothing else (a .venv,
# build/ or egg-info of an editable install) can end up in it.
mkdir -p "$work/src"
cp "$root/pyproject.toml" "$root/README.md" "$root/requirements.lock" "$work/src/"
for folder in contract operator trainer; do
  (cd "$root" && find "$folder" -name '__pycache__' -prune -o -type f -print) \
    | (cd "$root" && xargs -I{} install -D -m 0644 {} "$work/src/{}")
done
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" "$work/src"
wheel=$(ls "$work"/wheels/multitask_operator-*.whl)

if [ "$image" = trainer ]; then
  grep -v -E '^(nvidia-|triton)' "$root/requirements.lock" > "$work/constraints.txt"
else
  cp "$root/requirements.lock" "$work/constraints.txt"
fi

if ! ls "$dir"/.image-"$image"-"$deps_key"-* >/dev/null 2>&1; then
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --constraint "$work/constraints.txt" "${wheel}[$image]"
else
  "$dir/bin/python" -m pip install --quiet --no-deps --force-reinstall "$wheel"
fi
rm -f "$dir"/.image-"$image"-*

# The image's build check (the Dockerfiles run the same).
(cd "$work" && "$dir/bin/python" -m mtd_contract.images "$image")
if [ "$image" = operator ] && "$dir/bin/python" -c "import torch" 2>/dev/null; then
  echo "error: the operator image must not hold torch" >&2
  exit 1
fi
touch "$dir/.image-$image-$deps_key-$src_key"
echo "$dir: the $image image's virtualenv"
