using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim;

/// <summary>
/// The orthonormal DCT-II matrix C (s×s): C[k, j] = c_k·√(2/s)·cos(π·k·(2j+1) / (2s)), c_0 = 1/√2, c_k = 1
/// otherwise. Rows are frequencies k, columns sample positions j; CᵀC = CCᵀ = I. The DCT projector selects
/// columns of C. A process-wide cache keeps one copy per (size, dtype, device), shared by every parameter
/// that needs it and released when the last one is disposed.
/// </summary>
internal static class DctBasis
{
    private const long BlockRows = 256;
    private static readonly object Gate = new();
    private static readonly Dictionary<Key, Entry> Entries = [];

    /// <summary>
    /// Builds C for size <paramref name="size"/> in float64 — the angle index k·(2j+1) is reduced modulo 4s
    /// as an exact integer before the cosine, so no precision is lost for large s — then casts it to
    /// <paramref name="dtype"/> on <paramref name="device"/>. The result belongs to the caller's dispose scope.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is below 1.</exception>
    public static Tensor Build(long size, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, "the DCT size must be >= 1.");
        Tensor result;
        using (var scope = NewDisposeScope())
        {
            using var n = size.ToScalar();
            using var one = 1.ToScalar();
            using var two = 2.ToScalar();
            using var period = (4 * size).ToScalar();
            using var radians = (Math.PI / (2.0 * size)).ToScalar();
            var c = empty([size, size], dtype: ScalarType.Float64);
            var odd = arange(n, dtype: ScalarType.Int64).mul_(two).add_(one).unsqueeze(0); // 2j + 1
            for (long k0 = 0; k0 < size; k0 += BlockRows)
            {
                using var inner = NewDisposeScope();
                var rows = Math.Min(BlockRows, size - k0);
                using var start = k0.ToScalar();
                using var stop = (k0 + rows).ToScalar();
                var k = arange(start, stop, dtype: ScalarType.Int64).unsqueeze(1);
                var angle = k.mul(odd).remainder_(period).to(ScalarType.Float64).mul_(radians).cos_();
                c.narrow(0, k0, rows).copy_(angle);
            }
            using var orthonormal = Math.Sqrt(2.0 / size).ToScalar();
            using var firstRow = Math.Sqrt(0.5).ToScalar();
            c.mul_(orthonormal);
            c.narrow(0, 0, 1).mul_(firstRow);
            result = c.to(dtype, device ?? CPU, copy: true).MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>Bytes held by the cache now (every distinct size, dtype and device built so far and still in use).</summary>
    public static long CachedBytes
    {
        get
        {
            lock (Gate) return Entries.Values.Sum(e => e.Basis is { } b ? b.numel() * b.element_size() : 0);
        }
    }

    /// <summary>True when a basis of this size, dtype and device is cached now.</summary>
    public static bool IsCached(long size, ScalarType dtype, Device device)
    {
        lock (Gate) return Entries.TryGetValue(Key.Of(size, dtype, device), out var e) && e.Basis is not null;
    }

    /// <summary>Registers a user of the basis; the basis itself is built on the lease's first use.</summary>
    internal static Lease Acquire(long size, ScalarType dtype, Device device)
    {
        var key = Key.Of(size, dtype, device);
        lock (Gate)
        {
            if (!Entries.TryGetValue(key, out var entry)) Entries[key] = entry = new Entry();
            entry.Leases++;
        }
        return new Lease(key, device);
    }

    private static Tensor BasisOf(Key key, Device device)
    {
        lock (Gate)
        {
            var entry = Entries[key];
            if (entry.Basis is null)
            {
                using var scope = NewDisposeScope();
                entry.Basis = Build(key.Size, key.DType, device).DetachFromDisposeScope();
            }
            return entry.Basis;
        }
    }

    private static void Release(Key key)
    {
        lock (Gate)
        {
            if (!Entries.TryGetValue(key, out var entry) || --entry.Leases > 0) return;
            entry.Basis?.Dispose();
            Entries.Remove(key);
        }
    }

    /// <summary>One user's claim on a shared basis. Never dispose <see cref="Basis"/>; dispose the lease.</summary>
    internal sealed class Lease : IDisposable
    {
        private readonly Key _key;
        private readonly Device _device;
        private bool _released;

        internal Lease(Key key, Device device) => (_key, _device) = (key, device);

        /// <summary>The shared s×s basis, built by the first lease that asks for it.</summary>
        public Tensor Basis => _released ? throw new ObjectDisposedException(nameof(Lease)) : BasisOf(_key, _device);

        public void Dispose()
        {
            if (_released) return;
            _released = true;
            Release(_key);
        }
    }

    internal readonly record struct Key(long Size, ScalarType DType, DeviceType DeviceType, int DeviceIndex)
    {
        public static Key Of(long size, ScalarType dtype, Device device) => new(size, dtype, device.type, device.index);
    }

    private sealed class Entry
    {
        public Tensor? Basis;
        public int Leases;
    }
}
