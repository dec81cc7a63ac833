using System.Text;
using System.Xml.Linq;
using FluentAssertions;
using LowRankOptim.Bench.Data;
using Xunit;

namespace LowRankOptim.Tests.Bench;

public sealed class DataTests
{
    [Fact]
    public void DocumentationXmlIsStrippedToText()
    {
        var doc = XDocument.Parse("""
            <doc><members>
              <member name="M:System.Linq.Enumerable.Any``1"><summary>Determines whether a <see cref="T:System.Collections.Generic.IEnumerable`1" /> contains   any elements.</summary>
                <param name="source">The sequence to check, or <see langword="null" />.</param><returns>True if it does.</returns></member>
              <member name="T:Empty"></member>
            </members></doc>
            """);
        var text = new StringBuilder();
        Corpus.AppendDocumentation(doc, text);
        text.ToString().Should().Be("Determines whether a IEnumerable contains any elements. The sequence to check, or null. True if it does.\n");
    }

    [Fact]
    public void TheDefaultCorpusIsFoundOnThisMachine()
    {
        var dir = Corpus.DefaultSourceDirectory();
        dir.Should().NotBeNull("every .NET SDK ships the Microsoft.NETCore.App reference pack");
        Directory.GetFiles(dir!, "System.Runtime.xml").Should().ContainSingle();
    }

    [Fact]
    public void UserFilesAndFoldersAreRead()
    {
        var dir = Directory.CreateTempSubdirectory();
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "b.txt"), "second");
            File.WriteAllText(Path.Combine(dir.FullName, "a.txt"), "first");
            Corpus.Load(dir.FullName, out var description).Should().Be("first\n\nsecond");
            description.Should().Contain("2 .txt files");
            Corpus.Load(Path.Combine(dir.FullName, "a.txt"), out _).Should().Be("first");
            var missing = () => Corpus.Load(Path.Combine(dir.FullName, "nope"), out _);
            missing.Should().Throw<FileNotFoundException>().WithMessage("*--data*no such file or folder*");
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void ByteTokensRoundTripAnyText()
    {
        var tokenizer = new ByteTokenizer();
        const string text = "GaLore — ∑ low-rank ✓ naïve 日本";
        var ids = tokenizer.Encode(text);
        ids.Should().OnlyContain(i => i >= 0 && i < 256);
        tokenizer.Decode(ids).Should().Be(text);
    }

    [Fact]
    public void BatchesDependOnlyOnSeedAndStep()
    {
        var data = new TokenDataset(Enumerable.Range(0, 5000).Select(i => i % 256).ToArray());
        using var a = data.TrainBatch(3, 17, 4, 8);
        using var b = data.TrainBatch(3, 17, 4, 8);
        using var c = data.TrainBatch(3, 18, 4, 8);
        a.shape.Should().Equal(4, 9);
        a.data<long>().ToArray().Should().Equal(b.data<long>().ToArray());
        a.data<long>().ToArray().Should().NotEqual(c.data<long>().ToArray());
        data.TrainTokens.Should().Be(4900);
        data.ValidationBatches(2, 4, 8).Sum(t => t.shape[0]).Should().Be(8);
    }
}

public sealed class BpeTests
{
    [Fact]
    public void LearnedBpeRoundTripsAnyTextAndCompresses()
    {
        var sample = string.Concat(Enumerable.Repeat("Returns the number of elements in the sequence. Determines whether the sequence contains elements. ", 50));
        var bpe = ByteLevelBpe.Train(sample, vocabSize: 300);
        bpe.VocabSize.Should().Be(300);
        bpe.Merges.Should().HaveCount(44);
        foreach (var text in new[] { "Returns the sequence.", "naïve — ∑ 日本語 ✓ emoji 🙂 tabs\tand\nnewlines  double  spaces", "" })
        {
            var ids = bpe.Encode(text);
            ids.Where(i => i < 0 || i >= bpe.VocabSize).Should().BeEmpty();
            bpe.Decode(ids).Should().Be(text);
        }
        bpe.Encode("Returns the number of elements in the sequence.").Length.Should().BeLessThan(20, "frequent words became single tokens");
    }

    [Fact]
    public void TrainingIsDeterministic()
    {
        const string sample = "abc abd abe abc abd abc xyz xyz";
        ByteLevelBpe.Train(sample, 270).Merges.Should().Equal(ByteLevelBpe.Train(sample, 270).Merges);
    }
}
