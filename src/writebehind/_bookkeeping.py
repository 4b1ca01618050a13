"""The names of writebehind's bookkeeping attributes, in one place.

They are part of the file format: every backend stores them as attributes of the node
they describe, and files written by earlier versions carry the same names. Nothing here
imports anything, so every layer (codecs, drivers, engine, store, tools) can use it.
"""

from __future__ import annotations

__all__ = [
    "ATTR_DTYPES_ATTR",
    "ATTR_PREFIX",
    "BYTES_TYPE_NAME",
    "CODEC_ATTR",
    "DTYPE_ATTR",
    "FILE_ID_ATTR",
    "KIND_ATTR",
    "LENGTH_ATTR",
    "PYTHON_ATTR",
    "QUANTITY_ATTR",
    "TYPES_ATTR",
    "UNBOUND_ATTR",
]

#: Every bookkeeping attribute writebehind puts on a node starts with this prefix.
ATTR_PREFIX = "writebehind_"
#: On an appendable variable: how many of its entries a flush committed. Entries beyond it
#: (written, not yet committed when a process died) are not part of the variable.
LENGTH_ATTR = ATTR_PREFIX + "length"
#: On a variable: ``"appendable"`` or ``"fixed"``.
KIND_ATTR = ATTR_PREFIX + "kind"
#: On a group: the metadata of its children that were never written (JSON), kept there so
#: that such a child can still become a variable in a later session.
UNBOUND_ATTR = ATTR_PREFIX + "unbound_metadata"
#: On the root: the random id of a file writebehind created (32 hex digits).
FILE_ID_ATTR = ATTR_PREFIX + "file_id"
#: On a node: the JSON record of the Python types of its user metadata.
TYPES_ATTR = ATTR_PREFIX + "metadata_types"
#: On a variable: which codec wrote it, the Python type, the logical dtype, and whether its
#: values are quantities (see ``codecs.base.Spec.attrs``).
CODEC_ATTR = ATTR_PREFIX + "codec"
PYTHON_ATTR = ATTR_PREFIX + "python"
DTYPE_ATTR = ATTR_PREFIX + "dtype"
QUANTITY_ATTR = ATTR_PREFIX + "quantity"
#: The netCDF variable-length type (vlen of ubyte) that holds bytes values.
BYTES_TYPE_NAME = ATTR_PREFIX + "bytes"
#: On a node of a Zarr store: the numpy dtype of each non-str attribute (a JSON object, name
#: -> dtype string), which JSON alone loses (see drivers._zarr_attrs).
ATTR_DTYPES_ATTR = ATTR_PREFIX + "attribute_dtypes"
