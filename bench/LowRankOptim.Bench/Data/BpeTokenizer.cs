using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace LowRankOptim.Bench.Data;

/// <summary>
/// Byte-level BPE: merges are learned here from a sample of the training text (GPT-2's pre-tokenization
/// and byte-to-character mapping), then Microsoft.ML.Tokenizers' <see cref="Microsoft.ML.Tokenizers.BpeTokenizer"/>
/// encodes and decodes with them. Any UTF-8 text round-trips; the vocabulary is 256 bytes + the merges.
/// </summary>
public sealed partial class ByteLevelBpe : ITokenizer
{
    private readonly Tokenizer _tokenizer;

    private ByteLevelBpe(Tokenizer tokenizer, int vocabSize, IReadOnlyList<string> merges)
    {
        _tokenizer = tokenizer;
        VocabSize = vocabSize;
        Merges = merges;
    }

    public int VocabSize { get; }

    /// <summary>The learned merges, "left right" in byte-level characters, in merge order.</summary>
    public IReadOnlyList<string> Merges { get; }

    public int[] Encode(string text) => _tokenizer.EncodeToIds(text).ToArray();

    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids);

    // GPT-2's pre-tokenization: contractions, letters, digits, other symbols, each with one leading space.
    [GeneratedRegex(@"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
    private static partial Regex PreTokens();

    /// <summary>Learns <paramref name="vocabSize"/> − 256 merges from the first <paramref name="sampleChars"/> characters of <paramref name="text"/>.</summary>
    public static ByteLevelBpe Train(string text, int vocabSize, int sampleChars = 2_000_000)
    {
        if (vocabSize < 257) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "the BPE vocabulary must be > 256 (the byte alphabet plus at least one merge).");
        var byteChar = ByteToChar();
        var symbols = Enumerable.Range(0, 256).Select(b => byteChar[b].ToString()).ToList();

        // Unique pre-tokens with their counts, as sequences of symbol ids.
        var counts = new Dictionary<string, int>();
        foreach (Match m in PreTokens().Matches(text.Length > sampleChars ? text[..sampleChars] : text))
            counts[m.Value] = counts.GetValueOrDefault(m.Value) + 1;
        var words = counts.Select(kv => (Ids: Encoding.UTF8.GetBytes(kv.Key).Select(b => (int)b).ToList(), Count: kv.Value)).ToList();

        var pairCounts = new Dictionary<(int, int), long>();
        var pairWords = new Dictionary<(int, int), HashSet<int>>();
        void Count(int w, int sign)
        {
            var ids = words[w].Ids;
            for (var i = 0; i + 1 < ids.Count; i++)
            {
                var pair = (ids[i], ids[i + 1]);
                pairCounts[pair] = pairCounts.GetValueOrDefault(pair) + sign * words[w].Count;
                if (sign > 0) (pairWords.TryGetValue(pair, out var set) ? set : pairWords[pair] = []).Add(w);
            }
        }
        for (var w = 0; w < words.Count; w++) Count(w, +1);

        var merges = new List<string>();
        while (symbols.Count < vocabSize)
        {
            // The most frequent pair; ties go to the lowest ids, so training is deterministic.
            var best = pairCounts.Where(kv => kv.Value > 0).OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key.Item1).ThenBy(kv => kv.Key.Item2).Select(kv => kv.Key).FirstOrDefault((-1, -1));
            if (best.Item1 < 0) break; // nothing left to merge
            var id = symbols.Count;
            symbols.Add(symbols[best.Item1] + symbols[best.Item2]);
            merges.Add($"{symbols[best.Item1]} {symbols[best.Item2]}");
            foreach (var w in pairWords[best].ToList())
            {
                var ids = words[w].Ids;
                var has = false;
                for (var i = 0; i + 1 < ids.Count && !has; i++) has = ids[i] == best.Item1 && ids[i + 1] == best.Item2;
                if (!has) continue;
                Count(w, -1);
                var merged = new List<int>(ids.Count);
                for (var i = 0; i < ids.Count; i++)
                {
                    if (i + 1 < ids.Count && ids[i] == best.Item1 && ids[i + 1] == best.Item2) { merged.Add(id); i++; }
                    else merged.Add(ids[i]);
                }
                words[w] = (merged, words[w].Count);
                Count(w, +1);
            }
            pairCounts.Remove(best);
        }

        var options = new BpeOptions(symbols.Select((s, i) => new KeyValuePair<string, int>(s, i)))
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(PreTokens(), null),
        };
        return new ByteLevelBpe(BpeTokenizer.Create(options), symbols.Count, merges);
    }

    /// <summary>GPT-2's reversible byte → printable character mapping.</summary>
    private static char[] ByteToChar()
    {
        var map = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
            map[b] = b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255 ? (char)b : (char)next++;
        return map;
    }
}
