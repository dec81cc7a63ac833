using TorchSharp;
using static TorchSharp.torch;

namespace LowRankOptim.Bench.Data;

/// <summary>
/// A token stream split into training (first 98%) and validation (last 2%) parts. Training batches are random
/// windows drawn from a generator seeded by (seed, step), so every optimizer sees the same data in the same
/// order, and a resumed run sees what the uninterrupted one would have. Validation uses fixed windows.
/// </summary>
public sealed class TokenDataset
{
    private readonly int[] _train;
    private readonly int[] _validation;

    public TokenDataset(int[] tokens, double validationFraction = 0.02)
    {
        if (tokens.Length < 64) throw new ArgumentException($"the corpus has only {tokens.Length} tokens; at least 64 are needed.");
        var split = (int)(tokens.Length * (1 - validationFraction));
        _train = tokens[..split];
        _validation = tokens[split..];
    }

    public int TrainTokens => _train.Length;
    public int ValidationTokens => _validation.Length;

    /// <summary>The training batch of <paramref name="step"/>: (batch, sequence + 1) int64 token ids.</summary>
    public Tensor TrainBatch(long seed, long step, int batch, int sequence)
    {
        var rng = new Random(unchecked((int)(seed * 1_000_003 + step))); // Random(int) is deterministic across processes
        return Windows(_train, Enumerable.Range(0, batch).Select(_ => rng.Next(0, _train.Length - sequence - 1)), sequence);
    }

    /// <summary>Up to <paramref name="batches"/> fixed validation batches covering the validation split evenly.</summary>
    public IEnumerable<Tensor> ValidationBatches(int batches, int batch, int sequence)
    {
        var windows = Math.Max(1, (_validation.Length - 1) / (sequence + 1));
        var count = Math.Min(batches * batch, windows);
        var starts = Enumerable.Range(0, count).Select(i => (int)((long)i * (_validation.Length - sequence - 1) / Math.Max(1, count - 1))).ToList();
        for (var i = 0; i < starts.Count; i += batch)
            yield return Windows(_validation, starts.Skip(i).Take(batch), sequence);
    }

    private static Tensor Windows(int[] source, IEnumerable<int> starts, int sequence)
    {
        var rows = starts.Select(s => source.AsSpan(s, sequence + 1).ToArray()).ToList();
        var flat = rows.SelectMany(r => r).Select(v => (long)v).ToArray();
        return tensor(flat, [rows.Count, sequence + 1]);
    }
}
