"""The person's coverage of the still portrait, the alpha that keyed backgrounds composite with.

It is the alpha of the premultiplied person layer the warp renderer moves (matte.premultiplied_layer:
the matte, raised where the photo cannot be explained over the plate with less), so the still frame
keyed with it and a rendered frame keyed with the layer's warped alpha agree pixel for pixel.
"""

from __future__ import annotations

import numpy as np

from engine.generator.avatar import PreparedAvatar
from engine.generator.matte import person_layer, premultiplied_layer


def layer_of(avatar: PreparedAvatar) -> tuple[np.ndarray, np.ndarray]:
    """(matte, plate) of the avatar, made now for one prepared without them (a few hundred ms)."""
    if avatar.matte is not None and avatar.plate is not None:
        return avatar.matte, avatar.plate
    return person_layer(avatar.rgb, avatar.landmarks)


def still_alpha(avatar: PreparedAvatar) -> np.ndarray:
    """(H, W) uint8: 255 on the person, 0 on the background, soft at hair and edges."""
    matte, plate = layer_of(avatar)
    return np.ascontiguousarray(premultiplied_layer(avatar.rgb, matte, plate)[..., 3])
