r"""A process setting that makes CPU training faster without changing
results; the benchmarks use it (``bench.py --allocator tuned``), and a
training script can copy it.

PyTorch allocates CPU tensors with the C library's :obj:`malloc`. glibc serves
every block above its mmap threshold (at most 32 MiB, raised on the fly up to
that) with a fresh :obj:`mmap` and returns it to the system when freed, so
the next tensor of that size is page-faulted in again, one zeroed 4 KiB page
at a time. Ragged set batches reach that size quickly (65,536 elements x 128
float32 features are 32 MiB), and a training step allocates several such
tensors: on the 2-core benchmark machine an allocate-and-fill of 32 MiB took
9-13 ms instead of 1 ms, and a gather into a fresh 32 MiB buffer 11-15 ms
instead of 1.4 ms. PyTorch's CPU tuning guide recommends a caching allocator
(jemalloc, tcmalloc) for this; :func:`tune_cpu_allocator` gets the same effect
from glibc itself.
"""
import ctypes
import platform
import sys

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1


def tune_cpu_allocator(mmap_threshold: int = 2**30,
                       trim_threshold: int = 2**30) -> bool:
    r"""Keeps large freed tensors in the process for reuse instead of
    handing them back to the system, on Linux with glibc.

    Sets glibc's :obj:`M_MMAP_THRESHOLD` (blocks above it get their own
    :obj:`mmap`) and :obj:`M_TRIM_THRESHOLD` (free memory at the top of the
    heap above it is returned) with :obj:`mallopt`. It changes no result,
    only speed and memory accounting: the resident size no longer shrinks
    when tensors are freed, so it stays near the run's peak. Call it once,
    early (it affects the whole process, including other libraries). On the
    benchmark machine, forward + backward of an equivariant layer with
    32 MiB activations took 56-74 ms with it and 63-99 ms without (see
    :doc:`/benchmarks`); steps whose tensors stay under 32 MiB gained
    little.

    The same is possible without code through the environment, before
    Python starts:
    :obj:`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824`.

    Args:
        mmap_threshold (int, optional): Smallest block size, in bytes, that
            still gets its own :obj:`mmap`. (default: :obj:`2**30`)
        trim_threshold (int, optional): Free bytes at the top of the heap
            kept before memory is given back. (default: :obj:`2**30`)

    Returns:
        :obj:`True` if both settings were applied, :obj:`False` where the C
        library is not glibc (macOS, Windows, musl), which this leaves
        untouched. Under a preloaded jemalloc or tcmalloc the call still
        reaches glibc's :obj:`mallopt` and has no effect.

    Example:
        >>> from allocator import tune_cpu_allocator
        >>> tune_cpu_allocator() in (True, False)
        True
    """
    for name, value in (('mmap_threshold', mmap_threshold),
                        ('trim_threshold', trim_threshold)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"'{name}' must be an int number of bytes "
                            f"(got {type(value).__name__})")
        if not 0 < value <= _INT_MAX:
            raise ValueError(f"'{name}' must be in 1..{_INT_MAX} bytes "
                             f"(mallopt takes a C int; got {value})")
    if sys.platform != 'linux' or platform.libc_ver()[0] != 'glibc':
        return False
    try:
        mallopt = ctypes.CDLL('libc.so.6').mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trim = mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    mmap = mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    return trim == 1 and mmap == 1
