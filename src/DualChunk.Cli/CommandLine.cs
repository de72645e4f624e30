using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using DualChunk.Core;
using DualChunk.Kernels;

namespace DualChunk.Cli;

/// <summary>A command line that cannot be carried out as written (exit code 2).</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The <c>dualchunk</c> commands. Contract: exit 0 on success; otherwise non-zero and exactly one
/// line on stderr that says what is wrong (2: usage, 1: anything else). Parsing, --help and --version are
/// System.CommandLine's; the command bodies read their options through <see cref="Options"/>.
/// </summary>
internal static class CommandLine
{
    private static readonly string[] CommandNames = ["run", "convert", "inspect", "bench", "stream"];

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var notices = new List<string>();
        try
        {
            var root = BuildCommands(stdout, notices);
            if (args is ["help", .. var rest]) args = [.. rest, "--help"];
            // No response files: every token is what it says (an input path may start with '@').
            var result = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
            if (args.Length == 0)
            {
                result = root.Parse(["--help"]);
                result.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
                return 2;
            }
            if (result.Errors.Count > 0) throw new UsageException(DescribeError(result));
            int code = result.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
            foreach (var n in notices) stderr.WriteLine(n);
            return code;
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

    /// <summary>The commands and their options, as documented in README.md; the actions call the bodies below.</summary>
    private static RootCommand BuildCommands(TextWriter stdout, List<string> notices)
    {
        static Option<string> Value(string name, string helpName, string description, bool required = false, params string[] aliases)
            => new(name, aliases) { HelpName = helpName, Description = description, Required = required };
        static Option<bool> Flag(string name, string description) => new(name) { Description = description, Arity = ArgumentArity.Zero };
        var chunkSize = () => Value("--chunk-size", "C", "chunk size the model was built with, for a file that does not store it (safetensors, .nx without a spec). Default: Edifice's 64");
        var outputMode = () => Value("--output-mode", "last|all|mean", "last timestep [B, H] (default), every position [B, N, H], or the mean over positions [B, H]");
        var threads = () => Value("--threads", "T", "threads per call (default 1); results are bitwise identical for any T");
        var noSpinning = () => Flag("--no-spinning", "with T > 1, a call's threads block at every hand-off instead of spinning up to ~50 µs first (less CPU on shared cores, slower calls)");

        var run = new Command("run", "Runs the model on a .npy input and writes a float32 .npy output.")
        {
            Value("--model", "file", "weights: Edifice .nx, Nx.serialize, .safetensors, or .dcw", required: true),
            chunkSize(),
            Value("--input", "x.npy", "float32 or float64 .npy of shape [B, N, E], or [N, E] meaning B = 1", required: true),
            Value("--output", "y.npy", "where to write the float32 output", required: true),
            outputMode(),
            threads(),
            noSpinning(),
        };
        var stream = new Command("stream", "Feeds a .npy input through a stream one chunk at a time (each chunk costs one chunk, whatever the length) and writes every chunk's output.")
        {
            Value("--model", "file", "weights: Edifice .nx, Nx.serialize, .safetensors, or .dcw", required: true),
            chunkSize(),
            Value("--input", "x.npy", "float32 or float64 .npy of shape [B, N, E], or [N, E] meaning B = 1; N a multiple of C", required: true),
            Value("--output", "y.npy", "where to write the float32 output: [B, N, H] for all, else [B, N / C, H] (one row per chunk)", required: true),
            Value("--output-mode", "last|all|mean", "per chunk: its last position (default), its positions, or the mean over every position so far"),
            threads(),
            noSpinning(),
        };
        var convert = new Command("convert", "Converts an Edifice checkpoint (.nx, Nx.serialize, safetensors) to .dcw, which stores the architecture and chunk size.")
        {
            new Argument<string>("checkpoint") { Description = "the checkpoint to convert" },
            chunkSize(),
            Value("--output", "out.dcw", "the .dcw file to write", required: true, "-o"),
        };
        var inspect = new Command("inspect", "Shows the format, the Edifice spec, the config, tensors, sizes, checksum and the kernel path chosen on this machine.")
        {
            new Argument<string>("file") { Description = "a .nx, Nx.serialize, .safetensors or .dcw file" },
            chunkSize(),
        };
        var bench = new Command("bench", "Times the forward pass on random input and prints one JSON line.")
        {
            Value("--model", "file", "weights to time (or --random-model)"),
            Value("--random-model", "E,H,NH,L", "random weights of this shape, F = 4H (e.g. 287,256,8,4)"),
            Value("--arch", "dualchunk|decoder", "architecture of --random-model: DualChunk.build (default) or DecoderOnly with attention_type: :dual_chunk (RMSNorm, SwiGLU F = round(2.667H) up to a multiple of 8)"),
            chunkSize(),
            Value("--batch", "B", "batch size", required: true),
            Value("--seq", "N", "sequence length (a multiple of C)", required: true),
            outputMode(),
            threads(),
            noSpinning(),
            Value("--warmup", "W", "untimed calls (default: by time, >= 1.5 s and 50 calls, so the JIT reaches tier 1)"),
            Value("--iterations", "K", "timed calls (default: by time, >= 2 s and 30 calls)"),
            Flag("--warm-up-api", "call DualChunkModel.WarmUp before the first call"),
            Value("--models", "K", "load K copies of the model (memory of several loaded models)"),
            Flag("--json", "accepted for scripts; the output is always one JSON line"),
            Flag("--stream", "time one stream Append at length --seq N (the stream already holds N - C positions)"),
            Value("--callers", "K", "K threads call the one model at once, as a server's concurrent calls do; prints calls per second (the engine-alone baseline of bench/service-load.sh)"),
            Value("--seconds", "S", "with --callers: how long the callers run after their warm-up (default 10)"),
        };
        Bind(run, o => RunCommand(o, stdout, notices));
        Bind(stream, o => RunCommand(o, stdout, notices, stream: true));
        Bind(convert, o => ConvertCommand(o, stdout, notices));
        Bind(inspect, o => InspectCommand(o, stdout));
        Bind(bench, o => BenchCommandLine(o, stdout, notices));
        var root = new RootCommand("dualchunk: run, convert, inspect and benchmark Edifice Dual Chunk Attention models on the CPU.")
        {
            run, stream, convert, inspect, bench,
        };
        root.Directives.Clear();
        // System.CommandLine prints the entry assembly's version, which is the test host's under a test runner.
        root.Options.OfType<VersionOption>().Single().Action = new PrintVersion();
        return root;
    }

    private sealed class PrintVersion : System.CommandLine.Invocation.SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            var assembly = typeof(CommandLine).Assembly;
            parseResult.InvocationConfiguration.Output.WriteLine(
                assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
                    .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion
                ?? assembly.GetName().Version?.ToString());
            return 0;
        }
    }

    private static void Bind(Command command, Action<Options> body) => command.SetAction(result =>
    {
        body(new Options(result));
        return 0;
    });

    /// <summary>One line for the first parse error: unknown commands and options get the closest valid name.</summary>
    private static string DescribeError(ParseResult result)
    {
        var command = result.CommandResult.Command;
        string where = command is RootCommand ? "dualchunk" : $"dualchunk {command.Name}";
        if (result.UnmatchedTokens.Count > 0)
        {
            string token = result.UnmatchedTokens[0];
            if (command is RootCommand && !token.StartsWith('-'))
                return $"unknown command '{token}'{Suggest(token, CommandNames)}: the commands are {string.Join(", ", CommandNames[..^1])} and {CommandNames[^1]} (see dualchunk --help).";
            if (token.StartsWith('-') && token.Length > 1 && !double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
            {
                var names = command.Options.SelectMany(o => o.Aliases.Prepend(o.Name)).ToArray();
                return $"unknown option {token.Split('=', 2)[0]}{Suggest(token, names)}; see {where} --help.";
            }
            return $"unexpected argument '{token}'; see {where} --help.";
        }
        return $"{result.Errors[0].Message.TrimEnd('.')}; see {where} --help.";
    }

    /// <summary>" (did you mean X?)" for the name nearest by edit distance, when it is near enough to be a typo.</summary>
    private static string Suggest(string token, IEnumerable<string> names)
    {
        string key = token.Split('=', 2)[0];
        var best = names.Select(n => (Name: n, Distance: EditDistance(key, n))).MinBy(x => x.Distance);
        return best.Name is not null && best.Distance <= Math.Max(2, key.Length / 3) ? $" (did you mean {best.Name}?)" : "";
    }

    private static int EditDistance(string a, string b)
    {
        var row = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) row[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }

    /// <summary><c>run</c>, or <c>stream</c> (the same options; the input fed one chunk at a time, every chunk's output written).</summary>
    private static void RunCommand(Options o, TextWriter stdout, List<string> notices, bool stream = false)
    {
        string modelPath = o.Required("--model");
        string inputPath = o.Required("--input");
        string outputPath = o.Required("--output");
        var mode = ParseMode(o.Get("--output-mode") ?? "last");
        int threads = Threads(o);
        bool spinning = AllowSpinning(o);
        o.RejectUnknown();

        using var model = LoadModel(modelPath, o.ChunkSize, threads, spinning, notices);
        var (input, batch, seqLen) = ReadInput(inputPath, model);
        model.Config.ValidateSequenceLength(seqLen); // run's error for a partial chunk, and stream's: whole chunks only
        var (output, outShape) = stream ? StreamFeed.Run(model, input, batch, seqLen, mode)
            : (model.Run(input, batch, seqLen, mode), mode == OutputMode.All ? new[] { batch, seqLen, model.Config.HiddenSize } : [batch, model.Config.HiddenSize]);
        Npy.Write(outputPath, output, outShape);
        string how = stream ? string.Create(CultureInfo.InvariantCulture, $"{mode}, {seqLen / model.Config.ChunkSize} chunks streamed") : mode.ToString();
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {outputPath}: float32 [{string.Join(", ", outShape)}] ({how}; model {model.Config}; input [{batch}, {seqLen}, {model.Config.EmbedDim}])"));
    }

    /// <summary>An input .npy of [B, N, E] or [N, E] for <paramref name="model"/>.</summary>
    private static (float[] Input, int Batch, int SeqLen) ReadInput(string inputPath, DualChunkModel model)
    {
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
        return (input, batch, seqLen);
    }

    private static void ConvertCommand(Options o, TextWriter stdout, List<string> notices)
    {
        string input = o.Positional(0, "the checkpoint to convert");
        string output = o.Get("-o") ?? o.Get("--output") ?? throw new UsageException("convert needs -o <out.dcw>.");
        o.RejectUnknown();
        var (config, tensors, format) = WeightsLoader.Load(input, o.ChunkSize);
        if (o.ChunkSize is null && !StoresChunkSize(input))
            notices.Add($"--chunk-size not given and {input} does not store one: using Edifice's default {WeightsLoader.DefaultChunkSize}, stored in {output}");
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
        string? arch = o.Get("--arch");
        int batch = o.PositiveInt("--batch") ?? throw new UsageException("bench needs --batch B.");
        int seqLen = o.PositiveInt("--seq") ?? throw new UsageException("bench needs --seq N.");
        var mode = ParseMode(o.Get("--output-mode") ?? "last");
        int threads = Threads(o);
        bool spinning = AllowSpinning(o);
        int? warmup = o.NonNegativeInt("--warmup");          // null: by time (BenchCommand.Run)
        int? iterations = o.PositiveInt("--iterations");
        int copies = o.PositiveInt("--models") ?? 1;
        bool warmUpApi = o.Get("--warm-up-api") is not null;
        bool stream = o.Get("--stream") is not null;
        int? callers = o.PositiveInt("--callers");
        string? secondsText = o.Get("--seconds");
        double seconds = 10;
        if (secondsText is not null && (!double.TryParse(secondsText, NumberStyles.Float, CultureInfo.InvariantCulture, out seconds) || !(seconds > 0) || seconds > 3600))
            throw new UsageException($"--seconds '{secondsText}' must be a number of seconds above 0 and at most 3600.");
        if (secondsText is not null && callers is null) throw new UsageException("--seconds applies to --callers K.");
        if (callers is not null && (stream || copies != 1 || warmUpApi || iterations is not null))
            throw new UsageException("--callers K times concurrent Run calls for --seconds; it does not combine with --stream, --models, --warm-up-api or --iterations.");
        _ = o.Get("--json"); // the output is always one JSON line; the flag is accepted for the contract
        o.RejectUnknown();
        if (BuildInfo.Shortfall is { } shortfall) notices.Add($"note: {shortfall}");

        var options = new DualChunkModelOptions { MaxDegreeOfParallelism = threads, AllowSpinning = spinning };
        var models = new List<DualChunkModel>();
        long loadStart = System.Diagnostics.Stopwatch.GetTimestamp();
        double firstLoadMs = 0;
        for (int i = 0; i < copies; i++)
        {
            models.Add(LoadBenchModel(o, modelPath, random, arch, options, notices));
            if (i == 0) firstLoadMs = System.Diagnostics.Stopwatch.GetElapsedTime(loadStart).TotalMilliseconds;
        }
        try
        {
            var model = models[0];
            model.Config.ValidateSequenceLength(seqLen);
            if (callers is { } k)
            {
                BenchCommand.RunConcurrent(model, batch, seqLen, mode, k, warmup, seconds, stdout);
                return;
            }
            BenchCommand.Run(model, batch, seqLen, mode, warmup, iterations, warmUpApi, firstLoadMs, copies, stdout, stream);
        }
        finally
        {
            models.ForEach(m => m.Dispose());
        }
    }

    private static DualChunkModel LoadBenchModel(Options o, string? modelPath, string? random, string? arch, DualChunkModelOptions options, List<string> notices)
    {
        DualChunkModel model;
        var architecture = arch switch
        {
            null or "dualchunk" => ModelArchitecture.DualChunk,
            "decoder" => ModelArchitecture.DecoderOnly,
            _ => throw new UsageException($"--arch '{arch}' must be dualchunk or decoder."),
        };
        if (arch is not null && random is null)
            throw new UsageException("--arch applies to --random-model; a --model file's architecture comes from its tensor names.");
        if (random is not null)
        {
            if (modelPath is not null) throw new UsageException("give either --model or --random-model, not both.");
            var dims = random.Split(',');
            if (dims.Length != 4 || !dims.All(d => int.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0))
                throw new UsageException($"--random-model '{random}' must be E,H,NH,L (e.g. 287,256,8,4).");
            int[] v = Array.ConvertAll(dims, d => int.Parse(d, CultureInfo.InvariantCulture));
            // Edifice's FFN width: 4·H (DualChunk.build), round(2.667·H) up to a multiple of 8 (DecoderOnly's SwiGLU).
            long ffn = architecture == ModelArchitecture.DecoderOnly ? (long)Math.Round(v[1] * 2.667, MidpointRounding.AwayFromZero) + 8 : 4L * v[1];
            if (ffn > int.MaxValue)
                throw new ArgumentException($"--random-model '{random}': hidden size {v[1]} gives an FFN width of about {ffn}, above {int.MaxValue}; use a smaller hidden size.");
            int f = architecture == ModelArchitecture.DecoderOnly ? ModelConfig.SwiGluInnerSize(v[1]) : (int)ffn;
            var config = new ModelConfig(v[0], v[1], v[2], v[3], o.ChunkSize ?? WeightsLoader.DefaultChunkSize, f) { Architecture = architecture };
            model = DualChunkModel.FromTensors(RandomWeights.Create(config, seed: 1), config, options);
        }
        else
        {
            model = LoadModel(modelPath ?? throw new UsageException("bench needs --model <file> or --random-model E,H,NH,L."), o.ChunkSize, options.MaxDegreeOfParallelism, options.AllowSpinning, notices);
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

    /// <summary>False with <c>--no-spinning</c> (<see cref="DualChunkModelOptions.AllowSpinning"/>).</summary>
    private static bool AllowSpinning(Options o) => o.Get("--no-spinning") is null;

    private static DualChunkModel LoadModel(string path, int? chunkSize, int threads, bool allowSpinning, List<string> notices)
    {
        var model = DualChunkModel.Load(path, new DualChunkModelOptions
        {
            ChunkSize = chunkSize,
            MaxDegreeOfParallelism = threads,
            AllowSpinning = allowSpinning,
        });
        if (chunkSize is null && !notices.Contains(ChunkNotice) && !StoresChunkSize(path))
            notices.Add(ChunkNotice);
        return model;
    }

    /// <summary>True when the file stores its chunk size (read from its header; the file loaded already).</summary>
    private static bool StoresChunkSize(string path)
    {
        using var file = CheckpointFile.Open(path);
        return file.StoresChunkSize;
    }

    private static readonly string ChunkNotice = $"--chunk-size not given and the file does not store one: using Edifice's default {WeightsLoader.DefaultChunkSize}";

    private static OutputMode ParseMode(string text) => text switch
    {
        "last" or "last_timestep" => OutputMode.LastTimestep,
        "all" => OutputMode.All,
        "mean" or "mean_pool" => OutputMode.MeanPool,
        _ => throw new UsageException($"--output-mode '{text}' is not one of last, all, mean."),
    };


    /// <summary>The parsed options of one command, read by name; numbers are checked with the CLI's own messages.</summary>
    private sealed class Options(ParseResult result)
    {
        public string? Get(string key)
        {
            var option = result.CommandResult.Command.Options.FirstOrDefault(o => o.Name == key || o.Aliases.Contains(key))
                ?? throw new InvalidOperationException($"the command has no option {key}");
            return option switch
            {
                Option<bool> flag => result.GetValue(flag) ? "true" : null,
                Option<string> value => result.GetValue(value),
                _ => throw new InvalidOperationException($"option {key} has an unexpected type"),
            };
        }

        /// <summary>Required options are enforced by the parser; this reads one.</summary>
        public string Required(string key) => Get(key) ?? throw new UsageException($"missing {key} <value>; see dualchunk --help.");

        public string Positional(int index, string what)
        {
            var arguments = result.CommandResult.Command.Arguments;
            string? value = index < arguments.Count ? result.GetValue((Argument<string>)arguments[index]) : null;
            return value ?? throw new UsageException($"missing argument: {what}.");
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

        /// <summary>The parser has refused unknown options and extra arguments; the chunk size is checked even where a command ignores it.</summary>
        public void RejectUnknown() => _ = ChunkSize;
    }
}
