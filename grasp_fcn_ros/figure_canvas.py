"""Matplotlib figures without pyplot, and their PNG files: what every figure module shares.

Each figure gets its own Agg canvas, so nothing touches pyplot or the process-wide backend;
matplotlib and Pillow are imported when a figure is made, never by the node.
"""

import os

import numpy as np

#: Figure resolution, dots per inch.
DPI = 100


def agg_figure(width_in, height_in):
    """A matplotlib Figure (inches, constrained layout) on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout='constrained')
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path, colours=0):
    """Write a figure as PNG (the folder is created); with ``colours``, quantised to that many
    colours (a small file). Returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not colours:
        figure.savefig(path, dpi=DPI)
        return path
    from PIL import Image

    figure.canvas.draw()
    image = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3])
    image.quantize(colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path
