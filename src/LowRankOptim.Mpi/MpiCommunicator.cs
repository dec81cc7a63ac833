using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;
using Native = MPI.Unsafe;

namespace LowRankOptim.Mpi;

/// <summary>
/// <see cref="ICommunicator"/> over MPI_COMM_WORLD (MPI.NET's raw bindings, MPICH on Linux: see <see cref="MpiLibrary"/>).
/// Tensor memory is handed to MPI by pointer, in place (MPI_IN_PLACE), with no managed copies: a contiguous CPU tensor
/// of at least <see cref="BucketBytes"/> bytes is reduced or broadcast directly; smaller ones (and non-contiguous or
/// CUDA ones, since MPICH is not CUDA-aware) are packed into a bucket tensor of their dtype, so many small tensors
/// share one collective's latency. bfloat16 and float16 are summed in float32 (MPI has no 16-bit float sums).
/// <para>
/// MPI collectives cannot time out, so a watchdog thread ends this process (exit code 3) with a message naming the
/// collective when one has waited longer than <see cref="CollectiveTimeout"/>; mpiexec then ends the other ranks. A
/// rank that dies is detected by mpiexec itself (MPICH's Hydra ends the job).
/// </para>
/// </summary>
public sealed class MpiCommunicator : ICommunicator, IDisposable
{
    private const int CommWorld = Native.MPI_COMM_WORLD;
    private const int MaxCount = 1 << 30;
    private static readonly IntPtr InPlace = new(-1); // MPI_IN_PLACE in MPICH and MS-MPI
    private static MpiCommunicator? _world;
    private readonly Dictionary<ScalarType, Tensor> _buckets = [];
    private readonly Thread _watchdog;
    private readonly object _gate = new();
    private long _deadline; // Stopwatch ticks; 0 while no collective runs
    private string _current = "";
    private bool _disposed;

    private MpiCommunicator(int rank, int size, TimeSpan timeout, long bucketBytes)
    {
        (Rank, Size, CollectiveTimeout, BucketBytes) = (rank, size, timeout, bucketBytes);
        _watchdog = new Thread(Watch) { IsBackground = true, Name = "LowRankOptim.Mpi watchdog" };
        _watchdog.Start();
    }

    /// <inheritdoc />
    public int Rank { get; }

    /// <inheritdoc />
    public int Size { get; }

    /// <summary>How long one collective may wait for the other ranks before this process ends itself.</summary>
    public TimeSpan CollectiveTimeout { get; }

    /// <summary>Tensors smaller than this are packed into buckets of this many bytes.</summary>
    public long BucketBytes { get; }

    /// <summary>Collectives called since the start (bucketed calls count once).</summary>
    public long Calls { get; private set; }

    /// <summary>True when this process was started by an MPICH-compatible launcher (mpiexec.mpich sets PMI_RANK, MS-MPI PMI_RANK too).</summary>
    public static bool IsLaunched => System.Environment.GetEnvironmentVariable("PMI_RANK") is not null
                                     || System.Environment.GetEnvironmentVariable("PMI_SIZE") is not null;

    /// <summary>
    /// Initializes MPI once per process (MPI_Init_thread, serialized) and returns the world communicator.
    /// </summary>
    /// <param name="collectiveTimeout">The watchdog's limit per collective (default 10 minutes; it must exceed the longest
    /// time one rank can work alone, e.g. rank 0 writing a checkpoint while the others wait).</param>
    /// <param name="bucketBytes">Bucket size for small tensors (default 16 MiB).</param>
    /// <exception cref="InvalidOperationException">MPI is not available (the message says why and how to install it).</exception>
    public static MpiCommunicator Initialize(TimeSpan? collectiveTimeout = null, long bucketBytes = 16L << 20)
    {
        if (_world is not null) return _world;
        if (MpiLibrary.Load() is { } problem) throw new InvalidOperationException($"MPI is not available: {problem}.");
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketBytes, 64);
        unsafe
        {
            var argc = 0;
            byte** argv = null;
            Check(Native.MPI_Init_thread(ref argc, ref argv, Native.MPI_THREAD_SERIALIZED, out _), "MPI_Init_thread");
        }
        Check(Native.MPI_Comm_rank(CommWorld, out var rank), "MPI_Comm_rank");
        Check(Native.MPI_Comm_size(CommWorld, out var size), "MPI_Comm_size");
        return _world = new MpiCommunicator(rank, size, collectiveTimeout ?? TimeSpan.FromMinutes(10), bucketBytes);
    }

    /// <inheritdoc />
    public void AllReduceSum(IReadOnlyList<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var pending = new Dictionary<ScalarType, List<Tensor>>();
        foreach (var t in tensors)
        {
            var wide = SumType(t.dtype);
            if (wide == t.dtype && Direct(t)) { AllReduce(t, wide, $"all-reduce of a {Describe(t)} tensor"); continue; }
            if (!pending.TryGetValue(wide, out var list)) pending[wide] = list = [];
            list.Add(t);
            if (list.Sum(Bytes) >= BucketBytes) { Flush(list, wide, reduce: true, root: 0); list.Clear(); }
        }
        foreach (var (wide, list) in pending) if (list.Count > 0) Flush(list, wide, reduce: true, root: 0);
    }

    /// <inheritdoc />
    public void Broadcast(IReadOnlyList<Tensor> tensors, int root)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegative(root);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(root, Size);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var pending = new Dictionary<ScalarType, List<Tensor>>();
        foreach (var t in tensors)
        {
            if (Direct(t)) { Bcast(t, root, $"broadcast of a {Describe(t)} tensor from rank {root}"); continue; }
            if (!pending.TryGetValue(t.dtype, out var list)) pending[t.dtype] = list = [];
            list.Add(t);
            if (list.Sum(Bytes) >= BucketBytes) { Flush(list, t.dtype, reduce: false, root); list.Clear(); }
        }
        foreach (var (dtype, list) in pending) if (list.Count > 0) Flush(list, dtype, reduce: false, root);
    }

    /// <summary>Packs <paramref name="tensors"/> into the bucket of <paramref name="dtype"/>, runs one collective on it, unpacks.</summary>
    private void Flush(List<Tensor> tensors, ScalarType dtype, bool reduce, int root)
    {
        var total = tensors.Sum(t => t.numel());
        var bucket = Bucket(dtype, total);
        long offset = 0;
        foreach (var t in tensors)
        {
            var n = t.numel();
            if (!reduce && Rank != root) { offset += n; continue; } // receivers need not pack
            bucket.narrow(0, offset, n).copy_(t.reshape(-1));
            offset += n;
        }
        var what = $"{(reduce ? "all-reduce" : $"broadcast from rank {root}")} of a bucket of {tensors.Count} tensors ({total} {dtype})";
        if (reduce) AllReduce(bucket, dtype, what); else Bcast(bucket, root, what);
        offset = 0;
        foreach (var t in tensors)
        {
            var n = t.numel();
            if (reduce || Rank != root) t.copy_(bucket.narrow(0, offset, n).view(t.shape));
            offset += n;
        }
    }

    /// <summary>The first <paramref name="count"/> elements of a reused bucket tensor of <paramref name="dtype"/> (grown as needed).</summary>
    private Tensor Bucket(ScalarType dtype, long count)
    {
        if (!_buckets.TryGetValue(dtype, out var bucket) || bucket.numel() < count)
        {
            bucket?.Dispose();
            var elementBytes = Math.Max(1, empty(0, dtype: dtype).element_size());
            bucket = empty(Math.Max(count, BucketBytes / elementBytes), dtype: dtype).DetachFromDisposeScope();
            _buckets[dtype] = bucket;
        }
        return bucket.narrow(0, 0, count);
    }

    private unsafe void AllReduce(Tensor t, ScalarType dtype, string what)
    {
        var datatype = DataType(dtype);
        var pointer = Pointer(t);
        var elementBytes = t.element_size();
        for (long done = 0, n = t.numel(); done < n; done += MaxCount)
        {
            var count = (int)Math.Min(MaxCount, n - done);
            Guarded(what, () => Native.MPI_Allreduce(InPlace, pointer + (nint)(done * elementBytes), count, datatype, Native.MPI_SUM, CommWorld), "MPI_Allreduce");
        }
        GC.KeepAlive(t);
    }

    private void Bcast(Tensor t, int root, string what)
    {
        var pointer = Pointer(t);
        var bytes = t.numel() * t.element_size();
        for (long done = 0; done < bytes; done += MaxCount)
        {
            var count = (int)Math.Min(MaxCount, bytes - done);
            Guarded(what, () => Native.MPI_Bcast(pointer + (nint)done, count, Native.MPI_BYTE, root, CommWorld), "MPI_Bcast");
        }
        GC.KeepAlive(t);
    }

    /// <summary>Runs one MPI call under the watchdog.</summary>
    private void Guarded(string what, Func<int> call, string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (_gate)
        {
            _current = what;
            _deadline = Stopwatch.GetTimestamp() + (long)(CollectiveTimeout.TotalSeconds * Stopwatch.Frequency);
        }
        try
        {
            Check(call(), name);
            Calls++;
        }
        finally
        {
            lock (_gate) _deadline = 0;
        }
    }

    private void Watch()
    {
        var period = TimeSpan.FromMilliseconds(Math.Clamp(CollectiveTimeout.TotalMilliseconds / 20, 10, 1000));
        while (!_disposed)
        {
            Thread.Sleep(period);
            string? expired = null;
            lock (_gate)
                if (_deadline != 0 && Stopwatch.GetTimestamp() > _deadline) expired = _current;
            if (expired is null) continue;
            Console.Out.Flush();
            Console.Error.WriteLine(
                $"LowRankOptim.Mpi: rank {Rank} of {Size}: the {expired} did not complete within {CollectiveTimeout.TotalSeconds:F0} s: " +
                "another rank is dead, stuck, or not making the same collective calls. Ending this process (exit code 3).");
            Console.Error.Flush();
            Exit(3);
        }
    }

    private static void Exit(int code)
    {
        if (OperatingSystem.IsWindows()) System.Environment.Exit(code);
        _exit(code); // no managed shutdown: the main thread is blocked inside MPI
    }

    [DllImport("libc", EntryPoint = "_exit")]
    private static extern void _exit(int status);

    /// <summary>Direct use of the tensor's own memory: a contiguous CPU tensor of at least a bucket's size.</summary>
    private bool Direct(Tensor t) => t.device_type == DeviceType.CPU && t.is_contiguous() && Bytes(t) >= BucketBytes;

    private static long Bytes(Tensor t) => t.numel() * t.element_size();

    private static ScalarType SumType(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 or ScalarType.Float64 or ScalarType.Int64 or ScalarType.Int32 => dtype,
        ScalarType.BFloat16 or ScalarType.Float16 => ScalarType.Float32,
        _ => throw new NotSupportedException($"MpiCommunicator sums float32, float64, bfloat16, float16, int32 and int64 tensors, not {dtype}."),
    };

    private static int DataType(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => Native.MPI_FLOAT,
        ScalarType.Float64 => Native.MPI_DOUBLE,
        ScalarType.Int64 => Native.MPI_LONG_LONG,
        ScalarType.Int32 => Native.MPI_INT,
        _ => throw new NotSupportedException($"no MPI sum type for {dtype}"),
    };

    private static string Describe(Tensor t) => $"[{string.Join(", ", t.shape)}] {t.dtype}";

    private static IntPtr Pointer(Tensor t)
    {
        if (t.numel() == 0) return IntPtr.Zero;
        var address = THSTensor_data(t.Handle);
        if (address == IntPtr.Zero) throw new ArgumentException("the tensor has no data pointer.");
        return address;
    }

    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr tensorHandle);

    private static void Check(int code, string call)
    {
        if (code != 0) throw new InvalidOperationException($"{call} failed with MPI error code {code}.");
    }

    /// <summary>Finalizes MPI (collective: every rank calls it at the end).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var b in _buckets.Values) b.Dispose();
        _buckets.Clear();
        Native.MPI_Finalized(out var finalized);
        if (finalized == 0) Native.MPI_Finalize();
        if (ReferenceEquals(_world, this)) _world = null;
    }
}
