using FluentAssertions;
using Xunit;

namespace LowRankOptim.Tests.State;

/// <summary>
/// The checkpoint format of the library's projection and rule configs: entry names, kinds and order are fixed
/// (files of earlier releases must load), and every config reads back to an equal record.
/// </summary>
public sealed class ConfigFormatTests
{
    /// <summary>Every library config with a non-default value in every saved field (and some defaults).</summary>
    public static readonly object[] Golden =
    [
        FullSpace.Instance,
        new SvdProjection(7, 11, 0.125, ProjectionType.Left, TensorsProjected.MatricesAndFlattenedKernels),
        new SvdProjection(),
        new RandomizedSvdProjection(5, 13, 0.75, ProjectionType.Right, TensorsProjected.MatricesAndFlattenedKernels, 3, 4, -987654321012),
        new DctProjection(9, 2, 0.5, DctTransformMethod.FastTransform, double.PositiveInfinity, 4096, ProjectionType.ReverseStd, TensorsProjected.MatricesAndFlattenedKernels),
        new OnlinePcaProjection(6, 17, 0.3, ProjectionType.Left, TensorsProjected.MatricesAndFlattenedKernels,
            new AdafactorConfig(0.8, 1e-20, 2e-3, 1.5, -0.7, false, false, false), 0.02),
        new OnlinePcaProjection(),
        new GaLorePlusProjection(12, 21, 0.4, 5, 1, 77, new AttentionHeads(4, HeadAxis.Columns), CrossHeadReading.PerHeadShortSide, 0.05, 9, true, 0.6,
            TensorsProjected.MatricesAndFlattenedKernels),
        new GaLorePlusProjection(Heads: new AttentionHeads(3, HeadAxis.Rows)),
        new GaLorePlusProjection(),
        new AdamConfig(0.8, 0.95, 1e-6, false, AdamEpsilonMode.BeforeBiasCorrection),
        new AdamConfig(),
        new AdafactorConfig(0.85, 1e-29, 1e-2, 2.0, -0.6, true, false, true),
        new AdafactorConfig(),
        new SgdConfig(0.9, 0.1, false),
        new SgdConfig(0.5, 0, true),
        new SmmfConfig(null, 1e-7, -0.8, 0.99, false),
        new SmmfConfig(),
    ];

    /// <summary><see cref="Golden"/> as written by release 1 (the format before the config schemas), base64.</summary>
    private const string GoldenBytes =
        "CnByb2plY3Rpb24FCUZ1bGxTcGFjZQpwcm9qZWN0aW9uBQ1TdmRQcm9qZWN0aW9uBHJhbmsBBwAAAAAAAAAPdXBkYXRlX3Byb2pfZ2FwAQsAAAAAAAAABXNj" +
        "YWxlAgAAAAAAAMA/CXByb2pfdHlwZQECAAAAAAAAAAd0ZW5zb3JzAQEAAAAAAAAACnByb2plY3Rpb24FDVN2ZFByb2plY3Rpb24EcmFuawGAAAAAAAAAAA91" +
        "cGRhdGVfcHJval9nYXAByAAAAAAAAAAFc2NhbGUCAAAAAAAA0D8JcHJval90eXBlAQAAAAAAAAAAB3RlbnNvcnMBAAAAAAAAAAAKcHJvamVjdGlvbgUXUmFu" +
        "ZG9taXplZFN2ZFByb2plY3Rpb24EcmFuawEFAAAAAAAAAA91cGRhdGVfcHJval9nYXABDQAAAAAAAAAFc2NhbGUCAAAAAAAA6D8JcHJval90eXBlAQMAAAAA" +
        "AAAAB3RlbnNvcnMBAQAAAAAAAAAMb3ZlcnNhbXBsaW5nAQMAAAAAAAAAEHBvd2VyX2l0ZXJhdGlvbnMBBAAAAAAAAAAEc2VlZAGMDDcLGv///wpwcm9qZWN0" +
        "aW9uBQ1EY3RQcm9qZWN0aW9uBHJhbmsBCQAAAAAAAAAPdXBkYXRlX3Byb2pfZ2FwAQIAAAAAAAAABXNjYWxlAgAAAAAAAOA/CHNpbV90eXBlAQEAAAAAAAAA" +
        "CGVsbF9ub3JtAgAAAAAAAPB/CW1heF9zaGFwZQEAEAAAAAAAAAlwcm9qX3R5cGUBAQAAAAAAAAAHdGVuc29ycwEBAAAAAAAAAApwcm9qZWN0aW9uBRNPbmxp" +
        "bmVQY2FQcm9qZWN0aW9uBHJhbmsBBgAAAAAAAAAPdXBkYXRlX3Byb2pfZ2FwAREAAAAAAAAABXNjYWxlAjMzMzMzM9M/CXByb2pfdHlwZQECAAAAAAAAAAd0" +
        "ZW5zb3JzAQEAAAAAAAAADnBfd2VpZ2h0X2RlY2F5AnsUrkfhepQ/BHJ1bGUFD0FkYWZhY3RvckNvbmZpZwViZXRhMQMBmpmZmZmZ6T8EZXBzMQIjQpIMoZzH" +
        "OwRlcHMyAvyp8dJNYmA/DmNsaXBfdGhyZXNob2xkAgAAAAAAAPg/CmRlY2F5X3JhdGUCZmZmZmZm5r8NcmVsYXRpdmVfc3RlcAQAD3NjYWxlX3BhcmFtZXRl" +
        "cgQAC3dhcm11cF9pbml0BAAKcHJvamVjdGlvbgUTT25saW5lUGNhUHJvamVjdGlvbgRyYW5rAYAAAAAAAAAAD3VwZGF0ZV9wcm9qX2dhcAHIAAAAAAAAAAVz" +
        "Y2FsZQIAAAAAAADQPwlwcm9qX3R5cGUBAAAAAAAAAAAHdGVuc29ycwEAAAAAAAAAAA5wX3dlaWdodF9kZWNheQJ7FK5H4XqEPwRydWxlBQpBZGFtQ29uZmln" +
        "BWJldGExAs3MzMzMzOw/BWJldGEyAiuHFtnO9+8/A2VwcwI6jDDijnlFPgxjb3JyZWN0X2JpYXMEAQhlcHNfbW9kZQEAAAAAAAAAAApwcm9qZWN0aW9uBRRH" +
        "YUxvcmVQbHVzUHJvamVjdGlvbgRyYW5rAQwAAAAAAAAAD3VwZGF0ZV9wcm9qX2dhcAEVAAAAAAAAAAVzY2FsZQKamZmZmZnZPwxvdmVyc2FtcGxpbmcBBQAA" +
        "AAAAAAAQcG93ZXJfaXRlcmF0aW9ucwEBAAAAAAAAAARzZWVkAU0AAAAAAAAABWhlYWRzAQQAAAAAAAAACWhlYWRfYXhpcwEBAAAAAAAAAApjcm9zc19oZWFk" +
        "AQEAAAAAAAAAEHJlc2lkdWFsX2RlbnNpdHkCmpmZmZmZqT8PcmVzaWR1YWxfd2FybXVwAQkAAAAAAAAAE3Jlc2lkdWFsX3JlZXN0aW1hdGUEAQ5yZXNpZHVh" +
        "bF9zY2FsZQIzMzMzMzPjPwd0ZW5zb3JzAQEAAAAAAAAACnByb2plY3Rpb24FFEdhTG9yZVBsdXNQcm9qZWN0aW9uBHJhbmsBgAAAAAAAAAAPdXBkYXRlX3By" +
        "b2pfZ2FwAcgAAAAAAAAABXNjYWxlAgAAAAAAANA/DG92ZXJzYW1wbGluZwEIAAAAAAAAABBwb3dlcl9pdGVyYXRpb25zAQIAAAAAAAAABHNlZWQBAAAAAAAA" +
        "AAAFaGVhZHMBAwAAAAAAAAAJaGVhZF9heGlzAQAAAAAAAAAACmNyb3NzX2hlYWQBAAAAAAAAAAAQcmVzaWR1YWxfZGVuc2l0eQIAAAAAAAAAAA9yZXNpZHVh" +
        "bF93YXJtdXAByAAAAAAAAAATcmVzaWR1YWxfcmVlc3RpbWF0ZQQADnJlc2lkdWFsX3NjYWxlAgAAAAAAAPA/B3RlbnNvcnMBAAAAAAAAAAAKcHJvamVjdGlv" +
        "bgUUR2FMb3JlUGx1c1Byb2plY3Rpb24EcmFuawGAAAAAAAAAAA91cGRhdGVfcHJval9nYXAByAAAAAAAAAAFc2NhbGUCAAAAAAAA0D8Mb3ZlcnNhbXBsaW5n" +
        "AQgAAAAAAAAAEHBvd2VyX2l0ZXJhdGlvbnMBAgAAAAAAAAAEc2VlZAEAAAAAAAAAAAVoZWFkcwEAAAAAAAAAAAloZWFkX2F4aXMBAAAAAAAAAAAKY3Jvc3Nf" +
        "aGVhZAEAAAAAAAAAABByZXNpZHVhbF9kZW5zaXR5AgAAAAAAAAAAD3Jlc2lkdWFsX3dhcm11cAHIAAAAAAAAABNyZXNpZHVhbF9yZWVzdGltYXRlBAAOcmVz" +
        "aWR1YWxfc2NhbGUCAAAAAAAA8D8HdGVuc29ycwEAAAAAAAAAAARydWxlBQpBZGFtQ29uZmlnBWJldGExApqZmZmZmek/BWJldGEyAmZmZmZmZu4/A2VwcwKN" +
        "7bWg98awPgxjb3JyZWN0X2JpYXMEAAhlcHNfbW9kZQEBAAAAAAAAAARydWxlBQpBZGFtQ29uZmlnBWJldGExAs3MzMzMzOw/BWJldGEyAiuHFtnO9+8/A2Vw" +
        "cwI6jDDijnlFPgxjb3JyZWN0X2JpYXMEAQhlcHNfbW9kZQEAAAAAAAAAAARydWxlBQ9BZGFmYWN0b3JDb25maWcFYmV0YTEDATMzMzMzM+s/BGVwczECR7Om" +
        "/l5a6TkEZXBzMgJ7FK5H4XqEPw5jbGlwX3RocmVzaG9sZAIAAAAAAAAAQApkZWNheV9yYXRlAjMzMzMzM+O/DXJlbGF0aXZlX3N0ZXAEAQ9zY2FsZV9wYXJh" +
        "bWV0ZXIEAAt3YXJtdXBfaW5pdAQBBHJ1bGUFD0FkYWZhY3RvckNvbmZpZwViZXRhMQMABGVwczECoMLr/ktItDkEZXBzMgL8qfHSTWJQPw5jbGlwX3RocmVz" +
        "aG9sZAIAAAAAAADwPwpkZWNheV9yYXRlApqZmZmZmem/DXJlbGF0aXZlX3N0ZXAEAQ9zY2FsZV9wYXJhbWV0ZXIEAQt3YXJtdXBfaW5pdAQABHJ1bGUFCVNn" +
        "ZENvbmZpZwhtb21lbnR1bQLNzMzMzMzsPwlkYW1wZW5pbmcCmpmZmZmZuT8IbmVzdGVyb3YEAARydWxlBQlTZ2RDb25maWcIbW9tZW50dW0CAAAAAAAA4D8J" +
        "ZGFtcGVuaW5nAgAAAAAAAAAACG5lc3Rlcm92BAEEcnVsZQUKU21tZkNvbmZpZwRiZXRhAwADZXBzAkivvJry13o+CmRlY2F5X3JhdGUCmpmZmZmZ6b8LZ3Jv" +
        "d3RoX3JhdGUCrkfhehSu7z8OdmVjdG9yX3Jlc2hhcGUEAARydWxlBQpTbW1mQ29uZmlnBGJldGEDAc3MzMzMzOw/A2VwcwI6jDDijnlFPgpkZWNheV9yYXRl" +
        "AgAAAAAAAOC/C2dyb3d0aF9yYXRlAiuHFtnO9+8/DnZlY3Rvcl9yZXNoYXBlBAE=";

    private static byte[] Write(IEnumerable<object> configs)
    {
        using var stream = new MemoryStream();
        using (var binary = new BinaryWriter(stream))
        {
            var writer = new StateWriter(binary);
            foreach (var config in configs)
            {
                if (config is IProjectionConfig projection) ConfigCodec.Write(writer, projection);
                else ConfigCodec.Write(writer, (IUpdateRuleConfig)config);
            }
        }
        return stream.ToArray();
    }

    private static object Read(StateReader reader, object like) =>
        like is IProjectionConfig ? ConfigCodec.ReadProjection(reader) : ConfigCodec.ReadRule(reader);

    [Fact]
    public void ConfigsAreWrittenExactlyAsEarlierReleasesWroteThem()
    {
        Convert.ToBase64String(Write(Golden)).Should().Be(GoldenBytes);
    }

    [Fact]
    public void FilesOfEarlierReleasesReadToTheSameConfigs()
    {
        using var binary = new BinaryReader(new MemoryStream(Convert.FromBase64String(GoldenBytes)));
        var reader = new StateReader(binary, "golden configs");
        foreach (var expected in Golden) Read(reader, expected).Should().Be(expected);
        binary.BaseStream.Position.Should().Be(binary.BaseStream.Length);
    }

    /// <summary>A random valid config of each of the library's config types (execution policy included).</summary>
    private static readonly Dictionary<Type, Func<Random, object>> RandomConfigs = new()
    {
        [typeof(FullSpace)] = _ => FullSpace.Instance,
        [typeof(SvdProjection)] = r => new SvdProjection(Rank(r), Gap(r), Positive(r), Pick<ProjectionType>(r), Pick<TensorsProjected>(r)),
        [typeof(RandomizedSvdProjection)] = r => new RandomizedSvdProjection(Rank(r), Gap(r), Positive(r), Pick<ProjectionType>(r), Pick<TensorsProjected>(r),
            r.Next(0, 32), r.Next(0, 5), r.NextInt64(long.MinValue, long.MaxValue)),
        [typeof(DctProjection)] = r => new DctProjection(Rank(r), Gap(r), Positive(r), Pick<DctTransformMethod>(r),
            r.Next(4) == 0 ? double.PositiveInfinity : 1 + 8 * r.NextDouble(), r.NextInt64(1, long.MaxValue), OneSide(r), Pick<TensorsProjected>(r))
            { Kernel = Pick<KernelPreference>(r) },
        [typeof(OnlinePcaProjection)] = r => new OnlinePcaProjection(Rank(r), Gap(r), Positive(r), OneSide(r), Pick<TensorsProjected>(r),
            r.Next(3) switch
            {
                0 => Adam(r) with { Kernel = KernelPreference.Auto },
                1 => Adafactor(r, relativeStep: false) with { Kernel = KernelPreference.Auto },
                _ => Sgd(r),
            }, 0.1 * r.NextDouble()),
        [typeof(GaLorePlusProjection)] = r => new GaLorePlusProjection(Rank(r), Gap(r), Positive(r), r.Next(0, 32), r.Next(0, 5),
            r.NextInt64(long.MinValue, long.MaxValue), r.Next(2) == 0 ? null : new AttentionHeads(r.Next(1, 64), Pick<HeadAxis>(r)),
            Pick<CrossHeadReading>(r), r.Next(4) == 0 ? 0 : r.NextDouble(), r.Next(0, 1000), r.Next(2) == 0, Positive(r), Pick<TensorsProjected>(r)),
        [typeof(AdamConfig)] = r => Adam(r),
        [typeof(AdafactorConfig)] = r => Adafactor(r, relativeStep: r.Next(2) == 0),
        [typeof(SgdConfig)] = r => Sgd(r),
        [typeof(SmmfConfig)] = r => new SmmfConfig(r.Next(3) == 0 ? null : Unit(r), r.NextDouble() * 1e-6, -r.NextDouble(), r.NextDouble(),
            r.Next(2) == 0, Pick<KernelPreference>(r)),
    };

    private static int Rank(Random r) => r.Next(1, 4096);
    private static int Gap(Random r) => r.Next(1, 10_000);
    private static double Positive(Random r) => 1e-3 + 10 * r.NextDouble();
    private static double Unit(Random r) => 0.999 * r.NextDouble();
    private static T Pick<T>(Random r) where T : struct, Enum => Enum.GetValues<T>()[r.Next(Enum.GetValues<T>().Length)];
    private static ProjectionType OneSide(Random r) => (ProjectionType)r.Next((int)ProjectionType.Full);

    private static AdamConfig Adam(Random r) =>
        new(Unit(r), Unit(r), r.NextDouble() * 1e-6, r.Next(2) == 0, Pick<AdamEpsilonMode>(r), Pick<KernelPreference>(r));

    private static AdafactorConfig Adafactor(Random r, bool relativeStep) =>
        new(r.Next(2) == 0 ? null : Unit(r), 1e-30 + r.NextDouble() * 1e-20, r.NextDouble() * 1e-2, Positive(r), -r.NextDouble() - 1e-9,
            relativeStep, r.Next(2) == 0, relativeStep && r.Next(2) == 0, Pick<KernelPreference>(r));

    private static SgdConfig Sgd(Random r) =>
        r.Next(2) == 0 ? new SgdConfig(1e-3 + Unit(r), 0, Nesterov: true) : new SgdConfig(Unit(r), r.NextDouble());

    [Fact]
    public void EveryLibraryConfigIsRegisteredAndCovered()
    {
        var configTypes = typeof(LowRankOptimizer).Assembly.GetExportedTypes()
            .Where(t => !t.IsAbstract && (typeof(IProjectionConfig).IsAssignableFrom(t) || typeof(IUpdateRuleConfig).IsAssignableFrom(t)));
        configTypes.Should().OnlyContain(t => RandomConfigs.ContainsKey(t) || CatalogConfigs().Any(c => c.GetType() == t),
            "every library config is round-tripped: from random values, or from the method catalog's preset settings");
        configTypes.Should().OnlyContain(t => ConfigRegistry.IsRegistered(t));
    }

    /// <summary>The projection and rule of every preset setting of the method catalog (each knob at a non-default value somewhere).</summary>
    private static IEnumerable<object> CatalogConfigs() => Presets.PresetCatalog.Settings
        .Select(s => Presets.PresetCatalog.Call<LowRankOptions>(Presets.PresetCatalog.Preset(s.Preset), s.Knobs))
        .SelectMany(o => new object[] { o.Projection!, o.Rule! });

    [Fact]
    public void EveryPresetSettingsConfigReadsBackToAnEqualRecord()
    {
        foreach (var config in CatalogConfigs()) RoundTrips(config, $"{config.GetType().Name}: {config}");
    }

    [Fact]
    public void EveryLibraryConfigReadsBackToAnEqualRecord()
    {
        var random = new Random(20250611);
        foreach (var (type, generate) in RandomConfigs)
            for (var i = 0; i < 200; i++)
            {
                var config = generate(random);
                config.GetType().Should().Be(type);
                RoundTrips(config, $"{type.Name} #{i}: {config}");
            }
    }

    private static void RoundTrips(object config, string what)
    {
        var bytes = Write([config]);
        using var binary = new BinaryReader(new MemoryStream(bytes));
        var read = Read(new StateReader(binary, what), config);
        binary.BaseStream.Position.Should().Be(bytes.Length, what);

        // The math comes back; execution policy is never saved (a load keeps the loading optimizer's).
        read.Should().BeOfType(config.GetType(), what);
        Write([read]).Should().Equal(bytes, what);
        object restored = read is IProjectionConfig p
            ? p.WithExecutionPolicyOf((IProjectionConfig)config)
            : ((IUpdateRuleConfig)read).WithExecutionPolicyOf((IUpdateRuleConfig)config);
        restored.Should().Be(config, what);
        var validate = () => Validate(read);
        validate.Should().NotThrow(what, "a valid config reads back valid");
    }

    private static void Validate(object config)
    {
        if (config is IProjectionConfig projection) projection.Validate("round trip");
        else ((IUpdateRuleConfig)config).Validate("round trip");
    }

    [Fact]
    public void AnSmmfConfigWithTheLegacyKernelEntryLoadsAndSkipsIt()
    {
        using var stream = new MemoryStream();
        using (var binary = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            var writer = new StateWriter(binary);
            writer.String("rule", "SmmfConfig");
            writer.OptionalDouble("beta", 0.7);
            writer.Double("eps", 1e-6);
            writer.Double("decay_rate", -0.3);
            writer.Double("growth_rate", 0.5);
            writer.Bool("vector_reshape", false);
            writer.Long("kernel", (long)KernelPreference.Reference);
            writer.Long("after", 42);
        }
        stream.Position = 0;
        var reader = new StateReader(new BinaryReader(stream), "legacy SMMF");
        var config = ConfigCodec.ReadRule(reader);
        config.Should().Be(new SmmfConfig(0.7, 1e-6, -0.3, 0.5, false, KernelPreference.Auto), "the saved kernel is execution policy: skipped");
        reader.Long("after").Should().Be(42);
    }
}
