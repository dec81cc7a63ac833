using System.Reflection;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using FluentAssertions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace LowRankOptim.Tests.Docs;

/// <summary>
/// Every C# block of the README and of docs/**/*.md (```csharp), and every &lt;code&gt; example of the library's
/// XML docs, compiles against the library as a user's program would (issue 13, point 6), so the docs cannot rot.
/// A Markdown block is compiled as top-level statements with the project template's implicit usings and the
/// using directives of the blocks before it on the same page (a reader keeps them); names a snippet only
/// stands for (MyModel(), model, x, y, steps, opt, …) come from <see cref="DocContextSource"/>. An XML example is one line
/// of a user's code and is compiled with the usings a user has: LowRankOptim, TorchSharp, static torch.
/// </summary>
public sealed class DocSnippetTests
{
    /// <summary>The names snippets use without defining them: a user's model, data, loop length and optimizer.</summary>
    private const string DocContextSource = """
        using LowRankOptim;
        using TorchSharp;
        using TorchSharp.Modules;
        using static TorchSharp.torch;
        public static class DocContext
        {
            public static Sequential MyModel() => nn.Sequential(("fc1", nn.Linear(32, 64)), ("act", nn.ReLU()), ("fc2", nn.Linear(64, 10)));
            public static Sequential model = MyModel();
            public static Tensor x = randn(8, 32), y = randint(0, 10, 8);
            public static int steps = 10, stepsDone = 5;
            public static LowRankOptimizer opt = LowRank.AdamW(model.parameters());
        }
        """;

    private static readonly string[] ImplicitUsings =
        ["System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net.Http", "System.Threading", "System.Threading.Tasks"];

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "LowRankOptim.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("LowRankOptim.sln not found above the test output");
    }

    /// <summary>The Markdown pages whose C# blocks are compiled: the README, every page under docs/ and the bench's READMEs.</summary>
    public static IEnumerable<string> Pages()
    {
        var root = RepositoryRoot();
        yield return "README.md";
        foreach (var f in Directory.EnumerateFiles(Path.Combine(root, "docs"), "*.md", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            yield return Path.GetRelativePath(root, f);
        foreach (var f in Directory.EnumerateFiles(Path.Combine(root, "bench"), "README.md", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            if (!f.Contains("/bin/") && !f.Contains("/obj/")) yield return Path.GetRelativePath(root, f);
    }

    public static TheoryData<string, int> Blocks()
    {
        var data = new TheoryData<string, int>();
        var root = RepositoryRoot();
        foreach (var page in Pages())
            foreach (var block in CSharpBlocks(File.ReadAllText(Path.Combine(root, page))))
                data.Add(page, block.Line);
        return data;
    }

    private static readonly Regex Fence = new(@"^(?<indent>[ \t]*)```(?<lang>[A-Za-z#+-]*)[ \t]*$", RegexOptions.Multiline);

    /// <summary>The ```csharp (or ```cs) blocks of a page, with the 1-based line of their opening fence.</summary>
    internal static List<(int Line, string Code)> CSharpBlocks(string markdown)
    {
        var result = new List<(int, string)>();
        var lines = markdown.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var m = Fence.Match(lines[i].TrimEnd('\r'));
            if (!m.Success) continue;
            var end = Array.FindIndex(lines, i + 1, l => l.TrimEnd('\r').Trim() == "```");
            if (end < 0) break;
            if (m.Groups["lang"].Value is "csharp" or "cs" or "c#")
                result.Add((i + 1, string.Join('\n', lines[(i + 1)..end])));
            i = end;
        }
        return result;
    }

    [Fact]
    public void EveryPageIsFoundAndTheGettingStartedBlocksAreAmongTheCompiled()
    {
        Pages().Should().Contain(["README.md", Path.Combine("docs", "getting-started.md")]);
        Blocks().Count.Should().BeGreaterThanOrEqualTo(6);
        CSharpBlocks("a\n```csharp\nvar a = 1;\n```\n```bash\nls\n```\n  ```cs\nvar b = 2;\n  ```\n")
            .Should().Equal((2, "var a = 1;"), (8, "var b = 2;")); // the lines of the opening fences
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void MarkdownBlockCompiles(string page, int line)
    {
        var blocks = CSharpBlocks(File.ReadAllText(Path.Combine(RepositoryRoot(), page)));
        var index = blocks.FindIndex(b => b.Line == line);
        var earlierUsings = blocks.Take(index).SelectMany(b => Usings(b.Code)).ToList();
        var code = blocks[index].Code;
        var own = Usings(code).ToList();
        var body = string.Join('\n', code.Split('\n').Where(l => !IsUsing(l)));
        var program = string.Join('\n', earlierUsings.Concat(own).Distinct()) + "\nusing static DocContext;\n#line 1\n" + body;
        Compile($"{page}:{line}", program, outputKind: OutputKind.ConsoleApplication);
    }

    public static TheoryData<string> XmlExamples()
    {
        var data = new TheoryData<string>();
        foreach (var (member, _) in XmlCode()) data.Add(member);
        return data;
    }

    private static IEnumerable<(string Member, string Code)> XmlCode()
    {
        var xml = XDocument.Load(Path.Combine(AppContext.BaseDirectory, "LowRankOptim.xml"));
        var seen = new Dictionary<string, int>();
        foreach (var member in xml.Descendants("member"))
            foreach (var code in member.Descendants("code"))
            {
                var name = member.Attribute("name")!.Value;
                var n = seen[name] = seen.GetValueOrDefault(name) + 1;
                yield return (n == 1 ? name : $"{name} #{n}", Unindent(code.Value));
            }
    }

    [Fact]
    public void TheXmlDocsHaveExamples() => XmlCode().Count().Should().BeGreaterThanOrEqualTo(8);

    [Theory]
    [MemberData(nameof(XmlExamples))]
    public void XmlExampleCompiles(string member)
    {
        var code = XmlCode().First(c => c.Member == member).Code;
        var usings = new[] { "using LowRankOptim;", "using TorchSharp;", "using static TorchSharp.torch;" }.Concat(Usings(code)).Distinct();
        var body = string.Join('\n', code.Split('\n').Where(l => !IsUsing(l)));
        Compile(member, string.Join('\n', usings) + "\nusing static DocContext;\n#line 1\n" + body, outputKind: OutputKind.ConsoleApplication);
    }

    private static bool IsUsing(string line) => Regex.IsMatch(line, @"^\s*using\s+(static\s+)?[A-Za-z_][\w.]*\s*;\s*(//.*)?$");

    private static IEnumerable<string> Usings(string code) => code.Split('\n').Where(IsUsing).Select(l => l.Trim());

    private static string Unindent(string code)
    {
        var lines = code.Replace("\r", "").Split('\n').SkipWhile(string.IsNullOrWhiteSpace).Reverse().SkipWhile(string.IsNullOrWhiteSpace).Reverse().ToList();
        var indent = lines.Where(l => l.Trim().Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return string.Join('\n', lines.Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()));
    }

    private static readonly Lazy<List<MetadataReference>> References = new(() =>
    {
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Concat([typeof(TorchSharp.torch).Assembly.Location, typeof(LowRankOptimizer).Assembly.Location, typeof(KernelPreference).Assembly.Location, typeof(LowRankOptim.Mpi.MpiCommunicator).Assembly.Location])
            .Distinct();
        return paths.Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToList();
    });

    private static readonly CSharpParseOptions Parse = new(LanguageVersion.Preview);

    private static void Compile(string name, string program, OutputKind outputKind)
    {
        var globalUsings = string.Join('\n', ImplicitUsings.Select(u => $"global using {u};"));
        var compilation = CSharpCompilation.Create("DocSnippet",
            [
                CSharpSyntaxTree.ParseText(program, Parse, path: name),
                CSharpSyntaxTree.ParseText(globalUsings, Parse, path: "GlobalUsings.cs"),
                CSharpSyntaxTree.ParseText(DocContextSource, Parse, path: "DocContext.cs"),
            ],
            References.Value,
            new CSharpCompilationOptions(outputKind, nullableContextOptions: NullableContextOptions.Enable));
        using var pe = new MemoryStream();
        var result = compilation.Emit(pe);
        var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString()).ToList();
        errors.Should().BeEmpty($"the C# of {name} must compile:\n{program}");
    }
}
