#!/usr/bin/env bash
# Set everything up and run the demo study: Rotten Tomatoes snippets, fresh vs rotten, on MiniLM.
set -euo pipefail
cd "$(dirname "$0")/.."
./install.sh
.venv/bin/python examples/make_demo_data.py
exec .venv/bin/autoglm tune --config examples/demo.yaml --yes "$@"
