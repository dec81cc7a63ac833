namespace LowRankOptim.Tests.Support;

/// <summary>
/// Every *.json fixture in tests/fixtures (copied next to the test assembly) and in each directory of the
/// environment variable LOWRANKOPTIM_FIXTURES_DIRS (separated by the platform's path separator).
/// </summary>
public static class FixtureFiles
{
    public const string DirectoriesVariable = "LOWRANKOPTIM_FIXTURES_DIRS";

    public static IEnumerable<string> All()
    {
        var dirs = new List<string> { Path.Combine(AppContext.BaseDirectory, "fixtures") };
        var extra = Environment.GetEnvironmentVariable(DirectoriesVariable);
        if (!string.IsNullOrWhiteSpace(extra))
            dirs.AddRange(extra.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        foreach (var dir in dirs)
        {
            if (!Directory.Exists(dir))
                throw new DirectoryNotFoundException($"{DirectoriesVariable} names '{dir}', which is not a directory.");
            foreach (var file in Directory.EnumerateFiles(dir, "*.json").Order(StringComparer.Ordinal))
                yield return Path.GetFullPath(file);
        }
    }
}
