using System.Text.Json;
using System.Text.Json.Nodes;

namespace LowRankOptim.Tests.Support;

/// <summary>One golden case of ../fixtures (schema 1; see tests/fixtures/README.md).</summary>
public sealed class GoldenFixture
{
    public required string Name { get; init; }
    public required string Algorithm { get; init; }
    public required string SignCanonicalization { get; init; }
    public required JsonObject Optimizer { get; init; }
    public required List<JsonObject> Groups { get; init; }
    public required List<(string Name, long[] Shape, float[] Initial)> Parameters { get; init; }
    public required List<FixtureStep> Steps { get; init; }

    public sealed record FixtureStep(double[]? Lr, Dictionary<string, float[]> Gradients, Dictionary<string, float[]> Expected, JsonObject? Extra);

    public static GoldenFixture Load(string path)
    {
        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        if ((int)root["schema"]! != 1) throw new InvalidDataException($"{path}: unsupported schema {root["schema"]}");
        return new GoldenFixture
        {
            Name = (string)root["name"]!,
            Algorithm = (string)root["algorithm"]!,
            SignCanonicalization = (string?)root["sign_canonicalization"] ?? "none",
            Optimizer = root["optimizer"]!.AsObject(),
            Groups = root["groups"]!.AsArray().Select(g => g!.AsObject()).ToList(),
            Parameters = root["parameters"]!.AsArray().Select(p => (
                (string)p!["name"]!,
                p["shape"]!.AsArray().Select(d => (long)d!).ToArray(),
                Floats(p["initial"]!))).ToList(),
            Steps = root["steps"]!.AsArray().Select(s => new FixtureStep(
                s!["lr"]?.AsArray().Select(v => (double)v!).ToArray(),
                s["gradients"]!.AsObject().ToDictionary(kv => kv.Key, kv => Floats(kv.Value!)),
                s["expected"]!.AsObject().ToDictionary(kv => kv.Key, kv => Floats(kv.Value!)),
                s["extra"]?.AsObject())).ToList(),
        };
    }

    /// <summary>The algorithm key and name of a fixture file, read without loading the arrays' values.</summary>
    public static (string Name, string Algorithm) Peek(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return (doc.RootElement.GetProperty("name").GetString()!, doc.RootElement.GetProperty("algorithm").GetString()!);
    }

    // Values are the shortest round-trip decimal strings of float32s: parse straight to float.
    private static float[] Floats(JsonNode node) => node switch
    {
        JsonArray a => a.Select(v => float.Parse(v!.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
        _ => [float.Parse(node.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture)],
    };
}
