"""The stylization flags (one per StylizeOptions field), shared by the command lines that
stylize: `python -m tfstyle.stylize` and `python -m export.generators` (which bakes them into
the exported style-transfer models)."""

from __future__ import annotations

import dataclasses

from absl import flags

from tfstyle.stylize_lib import REGIONS, UNSTYLIZED, StylizeOptions


def define_stylize_flags(flag_values=flags.FLAGS) -> None:
    """Define --alpha, --strokes, ... --max_swap_entries with StylizeOptions' defaults."""
    d = {f.name: f.default for f in dataclasses.fields(StylizeOptions)}
    fv = flag_values
    flags.DEFINE_float("alpha", d["alpha"], "Content/style blend of the features: "
                       "alpha * stylized + (1 - alpha) * content (0: the content "
                       "reconstructed).", flag_values=fv)
    flags.DEFINE_integer("strokes", d["strokes"], "Multi-stroke fusion levels k: k - 1 "
                         "style-swap scales (1/2, 1/sqrt2, 1 for k = 4) plus the content.",
                         flag_values=fv)
    flags.DEFINE_integer("patch_size", d["patch_size"], "Style-swap patch side (odd).",
                         flag_values=fv)
    flags.DEFINE_float("theta", d["theta"], "Sharpness of the fusion weights.", flag_values=fv)
    flags.DEFINE_enum("region", d["region"], REGIONS,
                      "What to stylize: all, foreground (the salient object of the attention "
                      "mask) or background.", flag_values=fv)
    flags.DEFINE_float("mask_threshold", d["mask_threshold"],
                       "Foreground = upsampled attention map >= this (in [0, 1]).",
                       flag_values=fv)
    flags.DEFINE_enum("unstylized", d["unstylized"], UNSTYLIZED,
                      "What the region left unstylized shows: the content decoded by the "
                      "auto-encoder, or the original content pixels.", flag_values=fv)
    flags.DEFINE_integer("max_size", d["max_size"],
                         "Cap on the content's longer side; larger contents are downscaled.",
                         flag_values=fv)
    flags.DEFINE_integer("style_size", d["style_size"], "The style's longer side.",
                         flag_values=fv)
    flags.DEFINE_integer("max_swap_entries", d["max_swap_entries"],
                         "Largest chunk of the style-swap correlation volume held at once "
                         "(floats).", flag_values=fv)


def stylize_options_from_flags(flag_values=flags.FLAGS) -> StylizeOptions:
    """StylizeOptions from the parsed flags; ValueError naming the flag if one is invalid."""
    return StylizeOptions(**{f.name: flag_values[f.name].value
                             for f in dataclasses.fields(StylizeOptions)})
