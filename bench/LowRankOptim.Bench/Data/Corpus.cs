using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace LowRankOptim.Bench.Data;

/// <summary>
/// The training text. By default: the English API reference documentation that ships with every .NET SDK,
/// the IntelliSense XML files of the Microsoft.NETCore.App reference pack
/// (<c>{dotnet root}/packs/Microsoft.NETCore.App.Ref/{version}/ref/net{N}/*.xml</c>), stripped to the text of
/// their summary, remarks, param, returns, value and exception elements, one paragraph per member. The
/// .NET root is found from the running runtime's location, so nothing is downloaded. With <c>--data</c>, a
/// user's UTF-8 text file, or every *.txt file of a folder.
/// </summary>
public static partial class Corpus
{
    /// <summary>Where the default corpus was found, for reports.</summary>
    public static string? DefaultSourceDirectory()
    {
        // typeof(object) lives in {root}/shared/Microsoft.NETCore.App/{version}/
        var runtimeDir = Path.GetDirectoryName(typeof(object).Assembly.Location);
        var root = runtimeDir is null ? null : Path.GetFullPath(Path.Combine(runtimeDir, "..", "..", ".."));
        var packs = root is null ? null : Path.Combine(root, "packs", "Microsoft.NETCore.App.Ref");
        if (packs is null || !Directory.Exists(packs)) return null;
        var newest = Directory.GetDirectories(packs).OrderBy(d => Version.TryParse(Path.GetFileName(d).Split('-')[0], out var v) ? v : new Version()).LastOrDefault();
        if (newest is null) return null;
        return Directory.GetDirectories(Path.Combine(newest, "ref")).Order(StringComparer.Ordinal).LastOrDefault();
    }

    /// <summary>Reads the corpus: <paramref name="dataPath"/> (file or folder) when given, else the SDK docs.</summary>
    public static string Load(string? dataPath, out string description)
    {
        if (dataPath is not null)
        {
            if (File.Exists(dataPath))
            {
                description = $"{Path.GetFullPath(dataPath)} (user file)";
                return File.ReadAllText(dataPath);
            }
            if (Directory.Exists(dataPath))
            {
                var files = Directory.EnumerateFiles(dataPath, "*.txt", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
                if (files.Count == 0) throw new FileNotFoundException($"--data {dataPath}: the folder holds no *.txt file.");
                description = $"{Path.GetFullPath(dataPath)} ({files.Count} .txt files)";
                return string.Join("\n\n", files.Select(File.ReadAllText));
            }
            throw new FileNotFoundException($"--data {dataPath}: no such file or folder.");
        }
        var dir = DefaultSourceDirectory() ?? throw new DirectoryNotFoundException(
            "The .NET SDK's reference pack (packs/Microsoft.NETCore.App.Ref) was not found next to the running runtime; pass --data PATH.");
        var xmls = Directory.GetFiles(dir, "*.xml").Order(StringComparer.Ordinal).ToList();
        description = $"{dir} ({xmls.Count} XML documentation files of the .NET reference pack)";
        var text = new StringBuilder();
        foreach (var file in xmls) AppendDocumentation(XDocument.Load(file), text);
        return text.ToString();
    }

    private static readonly string[] TextElements = ["summary", "remarks", "param", "typeparam", "returns", "value", "exception"];

    /// <summary>Appends one paragraph per documented member.</summary>
    internal static void AppendDocumentation(XDocument doc, StringBuilder text)
    {
        foreach (var member in doc.Descendants("member"))
        {
            var parts = member.Elements().Where(e => TextElements.Contains(e.Name.LocalName)).Select(InnerText).Where(s => s.Length > 0).ToList();
            if (parts.Count == 0) continue;
            text.Append(string.Join(" ", parts)).Append('\n');
        }
    }

    /// <summary>The element's text with cross-references replaced by their short names and whitespace collapsed.</summary>
    internal static string InnerText(XElement element)
    {
        var sb = new StringBuilder();
        foreach (var node in element.DescendantNodes())
        {
            if (node is XText t && t.Parent?.Name.LocalName is not ("see" or "seealso" or "paramref" or "typeparamref")) sb.Append(t.Value);
            else if (node is XElement e && e.Name.LocalName is "see" or "seealso" or "paramref" or "typeparamref")
                sb.Append(ShortName((string?)e.Attribute("cref") ?? (string?)e.Attribute("langword") ?? (string?)e.Attribute("name") ?? e.Value));
        }
        return Whitespace().Replace(sb.ToString(), " ").Trim();
    }

    /// <summary>"T:System.Collections.Generic.List`1" → "List".</summary>
    private static string ShortName(string cref)
    {
        var name = cref.Contains(':') ? cref[(cref.IndexOf(':') + 1)..] : cref;
        var paren = name.IndexOf('(');
        if (paren >= 0) name = name[..paren];
        name = name[(name.LastIndexOf('.') + 1)..];
        var tick = name.IndexOf('`');
        return tick >= 0 ? name[..tick] : name;
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();
}
