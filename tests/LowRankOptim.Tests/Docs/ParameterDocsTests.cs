using System.Xml.Linq;
using FluentAssertions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace LowRankOptim.Tests.Docs;

/// <summary>
/// IntelliSense shows every parameter of the packages' public API (issue 13, point 7): each public or protected
/// method, constructor and indexer with parameters has &lt;param&gt; docs (the compiler then checks they name every
/// parameter, CS1573), or inherits its docs (&lt;inheritdoc/&gt;). The public members are read with Roslyn from the
/// built assemblies, their docs from the XML files next to them.
/// </summary>
public sealed class ParameterDocsTests
{
    /// <summary>Both packages; <paramref name="atLeast"/> guards against a reader that silently finds nothing.</summary>
    [Theory]
    [InlineData("LowRankOptim", 100)]
    [InlineData("LowRankOptim.Kernels", 20)]
    public void EveryPublicParameterIsDocumented(string assembly, int atLeast)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, assembly + ".dll");
        var docs = XDocument.Load(Path.ChangeExtension(dll, ".xml")).Descendants("member")
            .ToDictionary(m => m.Attribute("name")!.Value);
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Concat(Directory.GetFiles(AppContext.BaseDirectory, "*.dll")).DistinctBy(Path.GetFileName)
            .Select(p => MetadataReference.CreateFromFile(p)).ToList();
        var compilation = CSharpCompilation.Create("ApiReader", references: references);
        var target = compilation.References.Select(compilation.GetAssemblyOrModuleSymbol).OfType<IAssemblySymbol>()
            .Single(a => a.Name == assembly);

        var missing = new List<string>();
        var checkedMembers = 0;
        foreach (var type in Types(target.GlobalNamespace).Where(Visible))
        {
            if (type.TypeKind == TypeKind.Delegate) continue;
            foreach (var member in type.GetMembers().Where(m => !m.IsImplicitlyDeclared && !CompilerGenerated(m) && Visible(m)))
            {
                var parameters = member switch
                {
                    IMethodSymbol { MethodKind: MethodKind.Ordinary or MethodKind.Constructor or MethodKind.UserDefinedOperator or MethodKind.Conversion or MethodKind.ExplicitInterfaceImplementation } m => m.Parameters,
                    IPropertySymbol { IsIndexer: true } p => p.Parameters,
                    _ => default,
                };
                if (parameters.IsDefaultOrEmpty) continue;
                checkedMembers++;
                var id = member.GetDocumentationCommentId()!;
                var doc = docs.GetValueOrDefault(id);
                if (doc?.Element("inheritdoc") is not null) continue;
                // A positional record's parameters are documented on the type (the compiler gives the constructor no entry).
                if (member is IMethodSymbol { MethodKind: MethodKind.Constructor } && type.IsRecord && doc is null
                    && docs.GetValueOrDefault(type.GetDocumentationCommentId()!)?.Elements("param").Count() == parameters.Length) continue;
                var documented = doc?.Elements("param").Select(e => e.Attribute("name")?.Value).ToHashSet() ?? [];
                var undocumented = parameters.Where(p => !documented.Contains(p.Name)).Select(p => p.Name).ToList();
                if (undocumented.Count > 0) missing.Add($"{member.ToDisplayString()}: {string.Join(", ", undocumented)}");
            }
        }
        checkedMembers.Should().BeGreaterThanOrEqualTo(atLeast);
        string.Join("\n", missing).Should().BeEmpty($"every public parameter of {assembly} needs a <param> doc (or <inheritdoc/>)");
    }

    private static IEnumerable<INamedTypeSymbol> Types(INamespaceSymbol ns)
    {
        foreach (var type in ns.GetTypeMembers())
            foreach (var t in WithNested(type)) yield return t;
        foreach (var child in ns.GetNamespaceMembers())
            foreach (var t in Types(child)) yield return t;
    }

    private static IEnumerable<INamedTypeSymbol> WithNested(INamedTypeSymbol type)
    {
        yield return type;
        foreach (var nested in type.GetTypeMembers())
            foreach (var t in WithNested(nested)) yield return t;
    }

    /// <summary>Members a record (struct) synthesizes: Equals, ==, Deconstruct, … (metadata does not mark them implicit).</summary>
    private static bool CompilerGenerated(ISymbol s) =>
        s.GetAttributes().Any(a => a.AttributeClass?.Name == "CompilerGeneratedAttribute");

    private static bool Visible(ISymbol s)
    {
        for (var x = s; x is not null && x is not INamespaceSymbol; x = x.ContainingSymbol)
            if (x.DeclaredAccessibility is not (Accessibility.Public or Accessibility.Protected or Accessibility.ProtectedOrInternal)) return false;
        return true;
    }
}
