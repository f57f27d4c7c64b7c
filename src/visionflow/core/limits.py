"""Every size and time limit on untrusted input, in one place (the README lists them).

A file, record or request that declares more than these is refused with a one-line error
before anything that big is allocated or decompressed: a corrupt header or a decompression
bomb costs a read of its header, not the machine's memory.
"""

from __future__ import annotations

#: Pixels of one encoded image (width × height), checked from its header before decoding, in
#: every reader (TFRecord shards, image folders, `predict` files) and the server.  40 M pixels
#: is a 7,300 × 5,500 photo; Pillow's own bomb check starts at 89 M.
MAX_IMAGE_PIXELS = 40_000_000

#: The image formats visionflow reads: plain raster formats only (Pillow would hand some others,
#: such as EPS, to external programs).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")

#: Elements of one array in an input file (.npy batches for predict; IDX files): 2**31, i.e.
#: 2 GiB of uint8 — every MNIST-family file fits many times over.
MAX_ARRAY_ELEMENTS = 1 << 31

#: Bytes one compressed file (.gz IDX) may expand to; decompression stops past it.
MAX_DECOMPRESSED_BYTES = 1 << 31

#: One TFRecord record larger than this is taken for a corrupt length field, not allocated.
MAX_RECORD_BYTES = 1 << 30

#: The server: request bodies (after Content-Encoding is undone) larger than this get 413.
MAX_BODY_BYTES = 16 * 2**20

#: The server: seconds from a request's first byte to its reply (TF Serving's REST default of
#: 30 s, `--rest_api_timeout_in_ms`): headers still incomplete then close the connection, a body
#: still arriving gets 408, a reply not ready gets 504.
REQUEST_TIMEOUT_S = 30.0

#: The server: seconds a connection may stay open with no request in progress (a new connection
#: that sends nothing, or a kept-alive one between requests).
IDLE_TIMEOUT_S = 30.0

#: The server: seconds a version taken out of rotation waits for its in-flight requests before it
#: is closed anyway.  Retiring never holds up loading newer versions.
RETIRE_DRAIN_S = REQUEST_TIMEOUT_S + 5.0
