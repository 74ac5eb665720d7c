"""The CL–MIM signature (``vitscope signature``): where a model sits between a contrastive and a
masked-modelling reference, s = (x − x_MIM)/(x_CL − x_MIM), per property and relative depth.

A pure function of results files, in four rooms: :mod:`~.properties` (the properties and the
placement math), :mod:`~.folders` (results folders read and grouped by model, ``--reference``),
:mod:`~.table` (text, Markdown, HTML) and :mod:`~.figure` (``signature.png``). Their public names
are re-exported here.
"""

from vitscope.reporting.signature.figure import signature_figure
from vitscope.reporting.signature.folders import (
    Source,
    gather,
    gather_sources,
    parse_references,
    read_folder,
    read_signature,
    source_of,
)
from vitscope.reporting.signature.properties import (
    FORMULA,
    PROPERTIES,
    UNTRAINED_TOLERANCE,
    ModelResults,
    accuracy_peak_depth,
    aligned_diagonal,
    distance_fraction,
    input_size,
    last_block_gain,
    looks_untrained,
    noise_drop,
    pixels,
    place,
    placement,
    shape_bias,
    signature,
    signatures,
    uniform_distance,
)
from vitscope.reporting.signature.table import table_html, table_markdown, table_rows, table_text

__all__ = [
    "FORMULA", "PROPERTIES", "UNTRAINED_TOLERANCE", "ModelResults", "Source", "accuracy_peak_depth",
    "aligned_diagonal", "distance_fraction", "gather", "gather_sources", "input_size", "last_block_gain",
    "looks_untrained", "noise_drop", "parse_references", "pixels", "place", "placement", "read_folder",
    "read_signature", "shape_bias", "signature", "signature_figure", "signatures", "source_of", "table_html",
    "table_markdown", "table_rows", "table_text", "uniform_distance",
]
