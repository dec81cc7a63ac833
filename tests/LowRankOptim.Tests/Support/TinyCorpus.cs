using LowRankOptim.Bench.Data;

namespace LowRankOptim.Tests.Support;

/// <summary>The byte-token corpus of the bench's training tests: one pangram, repeated 200 times.</summary>
public static class TinyCorpus
{
    /// <summary>A fresh dataset of the corpus.</summary>
    public static TokenDataset Create() =>
        new(new ByteTokenizer().Encode(string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog. ", 200))));
}
