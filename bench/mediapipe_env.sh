#!/usr/bin/env bash
# A separate environment with Google's MediaPipe, the baseline of the matting benchmarks.
# MediaPipe is not a frameq dependency; frameq never imports it. Needs frameq's own .venv
# with its models pulled (make .venv/.installed) for the heavy pose file below.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-mediapipe/bin/python ]; then
  python3 -m venv .venv-mediapipe
fi
.venv-mediapipe/bin/pip install --quiet --disable-pip-version-check \
  "mediapipe==0.10.14" "numpy<2" "av>=12" "opencv-python-headless<4.11"
.venv-mediapipe/bin/python -c "import mediapipe; print('mediapipe', mediapipe.__version__)"
# MediaPipe downloads the heavy pose model at run time, which cannot work offline: give it
# the copy `frameq models pull` fetched and verified (the same file, pinned by sha256).
heavy="$(.venv/bin/python -c 'from models.weights import model_path; print(model_path("pose_landmark_heavy.tflite"))')"
target="$(.venv-mediapipe/bin/python -c 'import mediapipe, os; print(os.path.dirname(mediapipe.__file__))')/modules/pose_landmark/pose_landmark_heavy.tflite"
cp "$heavy" "$target"
