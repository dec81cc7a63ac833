using System.Text;

namespace LowRankOptim.Bench.Data;

/// <summary>A text ↔ token-id mapping.</summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int[] Encode(string text);
    string Decode(IEnumerable<int> ids);
}

/// <summary>Byte-level tokens: the UTF-8 bytes of the text, vocabulary 256.</summary>
public sealed class ByteTokenizer : ITokenizer
{
    public int VocabSize => 256;
    public int[] Encode(string text) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();
    public string Decode(IEnumerable<int> ids) => Encoding.UTF8.GetString(ids.Select(i => (byte)i).ToArray());
}
