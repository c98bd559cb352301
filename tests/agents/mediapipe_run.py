"""mediapipe's answers for the default portrait (face mesh, selfie segmentation), uncached: one JSON line.

Run in the parent environment (protobuf 4) and in the agent venv (protobuf 6): the answers must agree,
since the venv installs protobuf 6 over mediapipe 0.10.21's declared protobuf<5.
"""

from __future__ import annotations

import google.protobuf

from engine.generator import prepare_avatar
from engine.generator.matte import selfie_mask
from tests.agents.common import emit

if __name__ == "__main__":
    avatar = prepare_avatar(None, 320, cache_dir=None)
    matte = selfie_mask(avatar.rgb)
    emit({"protobuf": google.protobuf.__version__, "landmarks": avatar.landmarks.round(2).tolist(),
          "matte_mean": round(float(matte.mean()), 5), "matte_person": round(float((matte > 0.5).mean()), 5)})
