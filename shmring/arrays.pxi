# The dtype and shape that travel in a record header with an array.  The
# producer refuses what the consumer would refuse, with one set of rules.

cdef uint8_t RAW = 0xff             # Frame.ndim of a frame sent as bytes
cdef uint8_t IS_ARRAY = 1           # RecordHeader.flags: dtype and shape are set
# What dtype.str looks like for the dtypes arrays may carry ('<f8', '|S3',
# '<M8[ms]').  Anything else is refused before numpy parses it: np.dtype()
# raises SyntaxError for ',' and warns for deprecated aliases such as 'a'.
_DTYPE_CODE = re.compile(r"[<>|][biufcmMSUV][0-9]{1,5}(\[[0-9]{0,3}[A-Za-z]{1,2}\])?\Z")
_np = None


cdef object numpy():
    """numpy, imported on first use: bytes-only users never pay for it."""
    global _np
    if _np is None:
        import numpy
        _np = numpy
    return _np


cdef bint forbidden(object dt):
    """A dtype no frame may carry: objects, structs, subarrays, empty items."""
    return dt.hasobject or dt.fields is not None or dt.subdtype is not None or dt.itemsize == 0


cdef bytes dtype_code(object dt):
    """The header's dtype field for dt; ValueError for a dtype arrays cannot carry."""
    if forbidden(dt):
        raise ValueError(f"cannot send arrays of dtype {dt}: plain numeric, bytes "
                         "and datetime dtypes only")
    code = dt.str
    if not _DTYPE_CODE.match(code):
        raise ValueError(f"cannot send arrays of dtype {dt} ({code!r})")
    return code.encode("ascii")


cdef object array_nbytes(object dt, tuple shape):
    """Bytes of an array of dt and shape, as a Python int (a hostile shape
    must not wrap around); ValueError for a shape a header cannot hold."""
    if len(shape) > MAX_NDIM:
        raise ValueError(f"arrays of at most {MAX_NDIM} dimensions, not {len(shape)}")
    n = dt.itemsize
    for d in shape:
        if not 0 <= d <= 0xffffffff:
            raise ValueError(f"array dimension {d} out of range")
        n *= d
    return n


cdef void write_array_header(RecordHeader *rec, bytes code, tuple shape) noexcept:
    cdef Py_ssize_t i
    memset(rec.dtype, 0, 8)
    memcpy(rec.dtype, <char *>code, len(code))
    for i in range(MAX_NDIM):
        rec.shape[i] = shape[i] if i < len(shape) else 0
    rec.ndim = <uint8_t>len(shape)
    rec.flags = IS_ARRAY                # an array, even when 0-d


def dtype_from_code(code):
    """The dtype named by a dtype.str code as a frame header carries it (up to
    8 bytes, NUL padded), if arrays may carry it; ValueError otherwise.  The
    code is untrusted: it is matched before numpy parses it.  The bridge
    checks its wire headers with this too."""
    try:
        text = bytes(code).rstrip(b"\0").decode("ascii")
        if not _DTYPE_CODE.match(text):
            raise ValueError
        dt = numpy().dtype(text)
        if dt.str != text:
            raise ValueError
    except Exception:
        raise ValueError(f"an unreadable dtype {bytes(code)!r}") from None
    if forbidden(dt):
        raise ValueError(f"a forbidden dtype {dt}")
    return dt


cdef tuple read_array_header(RecordHeader *rec, uint64_t length, uint8_t ndim):
    """(dtype, shape) from a delivered record: the producer's header is
    untrusted, so it must describe exactly length bytes in an allowed dtype."""
    cdef int i
    try:
        dt = dtype_from_code((<char *>rec.dtype)[:8])
    except ValueError as e:
        raise RingCorrupted(f"frame carries {e}") from None
    if ndim > MAX_NDIM:
        raise RingCorrupted(f"frame claims {ndim} dimensions")
    shape = tuple(rec.shape[i] for i in range(ndim))
    if array_nbytes(dt, shape) != length:
        raise RingCorrupted(f"frame of {length} bytes cannot hold {dt} {shape}")
    return dt, shape
