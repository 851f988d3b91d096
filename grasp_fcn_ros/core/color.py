"""Colour images: reading image files as RGB."""

import cv2


def read_color_image(path):
    """Read a colour image file (a Cornell ``r.png``) as RGB.

    :param path: image file.
    :returns: uint8 (H, W, 3) RGB array, or None when the file cannot be read as an image.
    """
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
