using System.Globalization;
using DualChunk.Core;
using DualChunk.Kernels;

namespace DualChunk.Cli;

/// <summary>A command line that cannot be carried out as written (exit code 2).</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The <c>dualchunk</c> commands. Contract: exit 0 on success; otherwise non-zero and exactly one
/// line on stderr that says what is wrong (2: usage, 1: anything else).
/// </summary>
internal static class CommandLine
{
    public const int DefaultChunkSize = 64;

    private const string Usage = """
        usage:
          dualchunk run --model <file.safetensors|file.dcw> [--chunk-size C] --input <x.npy> --output <y.npy> [--output-mode last|all|mean] [--threads T]
          dualchunk convert <in.safetensors> [--chunk-size C] -o <out.dcw>
          dualchunk inspect <file.safetensors|file.dcw> [--chunk-size C]
          dualchunk bench (--model <file> | --random-model E,H,NH,L) [--chunk-size C] --batch B --seq N [--output-mode last|all|mean] [--threads T] [--warmup W] [--iterations K] [--warm-up-api] [--models K] [--json]
        """;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var notices = new List<string>();
        try
        {
            if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
            {
                stdout.WriteLine(Usage);
                return args.Length == 0 ? 2 : 0;
            }
            var options = Options.Parse(args.AsSpan(1));
            switch (args[0])
            {
                case "run": RunCommand(options, stdout, notices); break;
                case "convert": ConvertCommand(options, stdout, notices); break;
                case "inspect": InspectCommand(options, stdout); break;
                case "bench": BenchCommandLine(options, stdout, notices); break;
                default: throw new UsageException($"unknown command '{args[0]}'; the commands are run, convert and inspect (see --help).");
            }
            foreach (var n in notices) stderr.WriteLine(n);
            return 0;
        }
        catch (Exception ex) when (ex is UsageException or ArgumentException or ModelFormatException or NpyFormatException
                                       or IOException or UnauthorizedAccessException or OverflowException)
        {
            string message = ex.Message.ReplaceLineEndings(" ");
            // ArgumentException appends " (Parameter 'name')": an API detail, not news to a command-line user.
            if (ex is ArgumentException { ParamName: { } param })
                message = message.Replace($" (Parameter '{param}')", "", StringComparison.Ordinal);
            if (notices.Count > 0) message += " (" + string.Join("; ", notices) + ")";
            stderr.WriteLine($"dualchunk: error: {message}");
            return ex is UsageException ? 2 : 1;
        }
    }

    private static void RunCommand(Options o, TextWriter stdout, List<string> notices)
    {
        string modelPath = o.Required("--model");
        string inputPath = o.Required("--input");
        string outputPath = o.Required("--output");
        var mode = ParseMode(o.Get("--output-mode") ?? "last");
        int threads = Threads(o);
        o.RejectUnknown();

        using var model = LoadModel(modelPath, o.ChunkSize, threads, notices);
        var (input, shape) = Npy.Read(inputPath);
        int e = model.Config.EmbedDim;
        int batch, seqLen;
        switch (shape.Length)
        {
            case 3 when shape[2] == e: (batch, seqLen) = (shape[0], shape[1]); break;
            case 2 when shape[1] == e: (batch, seqLen) = (1, shape[0]); break;
            default:
                throw new ArgumentException($"{inputPath}: input shape ({string.Join(", ", shape)}) does not fit the model: expected [B, N, {e}] or [N, {e}] (embed_dim = {e}).");
        }
        if (batch == 0 || seqLen == 0)
            throw new ArgumentException($"{inputPath}: input shape ({string.Join(", ", shape)}) is empty; it needs at least one batch row and {model.Config.ChunkSize} positions.");

        var output = model.Run(input, batch, seqLen, mode);
        int[] outShape = mode == OutputMode.All ? [batch, seqLen, model.Config.HiddenSize] : [batch, model.Config.HiddenSize];
        Npy.Write(outputPath, output, outShape);
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {outputPath}: float32 [{string.Join(", ", outShape)}] ({mode}; model {model.Config}; input [{batch}, {seqLen}, {e}])"));
    }

    private static void ConvertCommand(Options o, TextWriter stdout, List<string> notices)
    {
        string input = o.Positional(0, "the safetensors file to convert");
        string output = o.Get("-o") ?? o.Get("--output") ?? throw new UsageException("convert needs -o <out.dcw>.");
        o.RejectUnknown();
        // A .dcw input carries its chunk size: only a safetensors input falls back to Edifice's default.
        bool dcwInput = WeightsFiles.IsDcw(input);
        int? chunkSize = o.ChunkSize ?? (dcwInput ? null : DefaultChunkSize);
        if (o.ChunkSize is null && !dcwInput)
            notices.Add($"--chunk-size not given: using Edifice's default {DefaultChunkSize}, stored in {output}");
        var (config, tensors, format) = WeightsLoader.Load(input, chunkSize);
        DcwFile.Write(output, config, tensors);
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"converted {input} ({format}) -> {output}: {config}"));
    }

    private static void InspectCommand(Options o, TextWriter stdout)
    {
        string path = o.Positional(0, "the weights file to inspect");
        o.RejectUnknown();
        Inspector.Write(path, o.ChunkSize, stdout);
    }

    private static void BenchCommandLine(Options o, TextWriter stdout, List<string> notices)
    {
        string? modelPath = o.Get("--model");
        string? random = o.Get("--random-model");
        int batch = o.PositiveInt("--batch") ?? throw new UsageException("bench needs --batch B.");
        int seqLen = o.PositiveInt("--seq") ?? throw new UsageException("bench needs --seq N.");
        var mode = ParseMode(o.Get("--output-mode") ?? "last");
        int threads = Threads(o);
        int? warmup = o.NonNegativeInt("--warmup");          // null: by time (BenchCommand.Run)
        int? iterations = o.PositiveInt("--iterations");
        int copies = o.PositiveInt("--models") ?? 1;
        bool warmUpApi = o.Get("--warm-up-api") is not null;
        _ = o.Get("--json"); // the output is always one JSON line; the flag is accepted for the contract
        o.RejectUnknown();

        var options = new DualChunkModelOptions { MaxDegreeOfParallelism = threads };
        var models = new List<DualChunkModel>();
        long loadStart = System.Diagnostics.Stopwatch.GetTimestamp();
        double firstLoadMs = 0;
        for (int i = 0; i < copies; i++)
        {
            models.Add(LoadBenchModel(o, modelPath, random, options, notices));
            if (i == 0) firstLoadMs = System.Diagnostics.Stopwatch.GetElapsedTime(loadStart).TotalMilliseconds;
        }
        try
        {
            var model = models[0];
            model.Config.ValidateSequenceLength(seqLen);
            BenchCommand.Run(model, batch, seqLen, mode, warmup, iterations, warmUpApi, firstLoadMs, copies, stdout);
        }
        finally
        {
            models.ForEach(m => m.Dispose());
        }
    }

    private static DualChunkModel LoadBenchModel(Options o, string? modelPath, string? random, DualChunkModelOptions options, List<string> notices)
    {
        DualChunkModel model;
        if (random is not null)
        {
            if (modelPath is not null) throw new UsageException("give either --model or --random-model, not both.");
            var dims = random.Split(',');
            if (dims.Length != 4 || !dims.All(d => int.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0))
                throw new UsageException($"--random-model '{random}' must be E,H,NH,L (e.g. 287,256,8,4).");
            int[] v = Array.ConvertAll(dims, d => int.Parse(d, CultureInfo.InvariantCulture));
            long ffn = 4L * v[1]; // Edifice's FFN width
            if (ffn > int.MaxValue)
                throw new ArgumentException($"--random-model '{random}': hidden size {v[1]} gives an FFN width 4·H = {ffn}, above {int.MaxValue}; use a smaller hidden size.");
            var config = new ModelConfig(v[0], v[1], v[2], v[3], o.ChunkSize ?? DefaultChunkSize, (int)ffn);
            model = DualChunkModel.FromTensors(RandomWeights.Create(config, seed: 1), config, options);
        }
        else
        {
            model = LoadModel(modelPath ?? throw new UsageException("bench needs --model <file> or --random-model E,H,NH,L."), o.ChunkSize, options.MaxDegreeOfParallelism, notices);
        }
        return model;
    }

    private static int Threads(Options o)
    {
        int threads = o.PositiveInt("--threads") ?? 1;
        if (threads > DualChunkModelOptions.MaxThreads)
            throw new UsageException($"--threads {threads} is above the maximum {DualChunkModelOptions.MaxThreads}.");
        return threads;
    }

    private static DualChunkModel LoadModel(string path, int? chunkSize, int threads, List<string> notices)
    {
        bool dcw = WeightsFiles.IsDcw(path);
        if (!dcw && chunkSize is null && !notices.Contains(ChunkNotice))
            notices.Add(ChunkNotice);
        return DualChunkModel.Load(path, new DualChunkModelOptions
        {
            ChunkSize = dcw ? chunkSize : chunkSize ?? DefaultChunkSize,
            MaxDegreeOfParallelism = threads,
        });
    }

    private static readonly string ChunkNotice = $"--chunk-size not given: using Edifice's default {DefaultChunkSize}";

    private static OutputMode ParseMode(string text) => text switch
    {
        "last" or "last_timestep" => OutputMode.LastTimestep,
        "all" => OutputMode.All,
        "mean" or "mean_pool" => OutputMode.MeanPool,
        _ => throw new UsageException($"--output-mode '{text}' is not one of last, all, mean."),
    };

    /// <summary>--name value pairs and positionals; every option must be consumed.</summary>
    private sealed class Options
    {
        /// <summary>Options that take no value.</summary>
        private static readonly HashSet<string> Flags = new(StringComparer.Ordinal) { "--json", "--warm-up-api" };

        private readonly Dictionary<string, string> _named = new(StringComparer.Ordinal);
        private readonly List<string> _positional = [];
        private readonly HashSet<string> _used = new(StringComparer.Ordinal);

        public static Options Parse(ReadOnlySpan<string> args)
        {
            var o = new Options();
            for (int i = 0; i < args.Length; i++)
            {
                string a = args[i];
                if (a.StartsWith('-') && a.Length > 1 && !double.TryParse(a, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
                {
                    string key = a, value;
                    int eq = a.IndexOf('=', StringComparison.Ordinal);
                    if (eq > 0) { key = a[..eq]; value = a[(eq + 1)..]; }
                    else if (Flags.Contains(a)) value = "true";
                    else if (i + 1 < args.Length) value = args[++i];
                    else throw new UsageException($"option {a} needs a value.");
                    if (!o._named.TryAdd(key, value)) throw new UsageException($"option {key} is given twice.");
                }
                else
                {
                    o._positional.Add(a);
                }
            }
            return o;
        }

        public string? Get(string key)
        {
            _used.Add(key);
            return _named.TryGetValue(key, out var v) ? v : null;
        }

        public string Required(string key) => Get(key) ?? throw new UsageException($"missing {key} <value>; see dualchunk --help.");

        public string Positional(int index, string what)
        {
            if (index >= _positional.Count) throw new UsageException($"missing argument: {what}.");
            return _positional[index];
        }

        public int? PositiveInt(string key) => Int(key, 1);

        public int? NonNegativeInt(string key) => Int(key, 0);

        private int? Int(string key, int min)
        {
            string? text = Get(key);
            if (text is null) return null;
            if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v) || v < min)
                throw new UsageException($"{key} '{text}' must be an integer ≥ {min}.");
            return v;
        }

        public int? ChunkSize
        {
            get
            {
                string? text = Get("--chunk-size");
                if (text is null) return null;
                if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int c))
                    throw new UsageException($"--chunk-size '{text}' is not an integer.");
                if (c <= 0)
                    throw new UsageException($"--chunk-size {c} must be a positive integer (Edifice's default is 64).");
                return c;
            }
        }

        public void RejectUnknown()
        {
            _ = ChunkSize; // validated even where a command ignores it
            foreach (var key in _named.Keys)
                if (!_used.Contains(key)) throw new UsageException($"unknown option {key}; see dualchunk --help.");
        }
    }
}
