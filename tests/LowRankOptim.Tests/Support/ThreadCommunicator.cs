using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Tests.Support;

/// <summary>
/// Ranks as threads of this process, for data-parallel tests without MPI: <see cref="Run{T}"/> starts one thread per
/// rank with its own <see cref="ICommunicator"/>. Sums are taken in rank order by every rank from the same inputs,
/// so every rank gets identical results (as MPI's all-reduce); bfloat16/float16 are summed in float32 as the MPI
/// communicator does. A rank that throws cancels the others' waits, so a test fails instead of hanging.
/// </summary>
public sealed class ThreadCommunicator : ICommunicator
{
    private readonly Group _group;

    private ThreadCommunicator(Group group, int rank) => (_group, Rank) = (group, rank);

    public int Rank { get; }
    public int Size => _group.Size;

    /// <summary>Runs <paramref name="body"/> on <paramref name="size"/> rank threads; returns each rank's result (index = rank).</summary>
    public static T[] Run<T>(int size, Func<ICommunicator, T> body)
    {
        var group = new Group(size);
        var results = new T[size];
        var errors = new Exception?[size];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
        {
            try
            {
                results[r] = body(new ThreadCommunicator(group, r));
            }
            catch (Exception e)
            {
                errors[r] = e;
                group.Cancel.Cancel();
            }
        }, 16 << 20)).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        var first = errors.FirstOrDefault(e => e is not null and not OperationCanceledException) ?? errors.FirstOrDefault(e => e is not null);
        if (first is not null) throw new AggregateException($"rank {Array.IndexOf(errors, first)} failed", first);
        return results;
    }

    public void AllReduceSum(IReadOnlyList<Tensor> tensors)
    {
        var inputs = _group.Exchange(Rank, tensors);
        var sums = new Tensor[tensors.Count];
        using (no_grad())
        {
            for (var i = 0; i < tensors.Count; i++)
            {
                var wide = tensors[i].dtype is ScalarType.BFloat16 or ScalarType.Float16 ? ScalarType.Float32 : tensors[i].dtype;
                var sum = inputs[0][i].to(wide, copy: true);
                for (var r = 1; r < Size; r++) sum.add_(inputs[r][i].to(wide));
                sums[i] = sum;
            }
        }
        _group.Wait(); // every rank has read every input
        using (no_grad())
        {
            for (var i = 0; i < tensors.Count; i++)
            {
                tensors[i].copy_(sums[i]);
                sums[i].Dispose();
            }
        }
        _group.Wait(); // nobody starts the next collective before every rank wrote its result
    }

    public void Broadcast(IReadOnlyList<Tensor> tensors, int root)
    {
        var inputs = _group.Exchange(Rank, tensors);
        if (Rank != root)
            using (no_grad())
                for (var i = 0; i < tensors.Count; i++) tensors[i].copy_(inputs[root][i]);
        _group.Wait();
    }

    private sealed class Group(int size)
    {
        private readonly Barrier _barrier = new(size);
        private readonly IReadOnlyList<Tensor>[] _inputs = new IReadOnlyList<Tensor>[size];

        public int Size { get; } = size;
        public CancellationTokenSource Cancel { get; } = new();

        /// <summary>Publishes this rank's tensors and returns every rank's, after checking they match rank 0's in count, shape and dtype.</summary>
        public IReadOnlyList<Tensor>[] Exchange(int rank, IReadOnlyList<Tensor> tensors)
        {
            _inputs[rank] = tensors;
            Wait();
            var reference = _inputs[0];
            for (var r = 1; r < Size; r++)
            {
                var other = _inputs[r];
                if (other.Count != reference.Count || other.Zip(reference).Any(p => !p.First.shape.SequenceEqual(p.Second.shape) || p.First.dtype != p.Second.dtype))
                    throw new InvalidOperationException($"collective mismatch: rank {r} passed {Describe(other)}, rank 0 {Describe(reference)}");
            }
            return _inputs;
        }

        public void Wait()
        {
            if (!_barrier.SignalAndWait(TimeSpan.FromSeconds(120), Cancel.Token))
                throw new TimeoutException("a rank did not reach the collective within 120 s");
        }

        private static string Describe(IReadOnlyList<Tensor> ts) => string.Join(", ", ts.Select(t => $"[{string.Join(",", t.shape)}] {t.dtype}"));
    }
}
