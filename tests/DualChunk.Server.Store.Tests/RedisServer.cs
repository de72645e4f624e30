using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace DualChunk.Server.Store.Tests;

/// <summary>
/// A real <c>redis-server</c> on a free loopback port, in a temporary directory, persisting nothing
/// (<c>--save '' --appendonly no</c>); started, waited for (PING), stopped and restarted on the same port by tests.
/// Debian's package: <c>apt-get install redis-server</c> (.ci/run installs it when missing).
/// </summary>
internal sealed class RedisServer : IDisposable
{
    private static readonly TimeSpan StartBound = TimeSpan.FromSeconds(20);
    private readonly string _dir;
    private Process? _process;

    private RedisServer(string executable)
    {
        Executable = executable;
        _dir = Path.Combine(Path.GetTempPath(), "dualchunk-redis-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    /// <summary>The redis-server binary.</summary>
    public string Executable { get; }

    /// <summary>The loopback port it listens on (kept across <see cref="Stop"/> / <see cref="Start"/>).</summary>
    public int Port { get; private set; }

    /// <summary>The StackExchange.Redis connection string: 127.0.0.1:port.</summary>
    public string Endpoint => string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{Port}");

    /// <summary>True while the process runs.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>
    /// Starts a new server on a free port. Without redis-server the test is ignored, unless DUALCHUNK_REQUIRE_REDIS=1
    /// (set by .ci/run), where it fails: CI must never skip these.
    /// </summary>
    public static RedisServer StartNew()
    {
        string? exe = Find();
        if (exe is null)
        {
            const string Missing = "redis-server is not installed (Debian: apt-get install redis-server); the sequence store tests need a real one.";
            if (Environment.GetEnvironmentVariable("DUALCHUNK_REQUIRE_REDIS") == "1") Assert.Fail(Missing);
            Assert.Ignore(Missing);
        }
        var server = new RedisServer(exe!);
        for (int attempt = 0; ; attempt++)
        {
            server.Port = FreePort();
            try
            {
                server.Start();
                return server;
            }
            catch (InvalidOperationException) when (attempt < 3)
            {
                // The port was taken between choosing it and binding it: choose another.
            }
        }
    }

    /// <summary>Starts (or restarts) the server on <see cref="Port"/> and waits until it answers PING.</summary>
    public void Start()
    {
        if (IsRunning) return;
        var psi = new ProcessStartInfo(Executable)
        {
            WorkingDirectory = _dir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "--port", Port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", _dir, "--logfile", Path.Combine(_dir, "redis.log"), "--enable-debug-command", "local", "--daemonize", "no" })
            psi.ArgumentList.Add(a);
        var process = Process.Start(psi) ?? throw new InvalidOperationException("redis-server did not start.");
        process.StandardOutput.ReadToEndAsync(); // drain; the log goes to the file
        process.StandardError.ReadToEndAsync();
        _process = process;
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartBound)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"redis-server on port {Port} exited with {process.ExitCode}: {Log()}");
            if (Command("PING") == "+PONG") return;
            Thread.Sleep(50);
        }
        Stop();
        throw new InvalidOperationException($"redis-server on port {Port} did not answer PING within {StartBound.TotalSeconds} s: {Log()}");
    }

    /// <summary>Stops the server at once (SIGKILL: what a crash or a lost node looks like to clients).</summary>
    public void Stop()
    {
        var process = _process;
        _process = null;
        if (process is null) return;
        try
        {
            if (!process.HasExited) process.Kill();
            process.WaitForExit(10_000);
        }
        finally
        {
            process.Dispose();
        }
    }

    /// <summary>
    /// Sends one inline command (e.g. <c>DEBUG SLEEP 2</c>) on a fresh socket and returns the first line of the answer,
    /// or null when nothing answered within <paramref name="timeoutMs"/>.
    /// </summary>
    public string? Command(string command, int timeoutMs = 1000)
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = timeoutMs, SendTimeout = timeoutMs };
            socket.Connect(IPAddress.Loopback, Port);
            socket.Send(Encoding.ASCII.GetBytes(command + "\r\n"));
            var buffer = new byte[512];
            int n = socket.Receive(buffer);
            string text = Encoding.ASCII.GetString(buffer, 0, n);
            int end = text.IndexOf('\r', StringComparison.Ordinal);
            return end < 0 ? text : text[..end];
        }
        catch (SocketException)
        {
            return null;
        }
    }

    /// <summary>Sends a command without waiting for its answer (for one that blocks the server, like DEBUG SLEEP).</summary>
    public void Fire(string command)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Connect(IPAddress.Loopback, Port);
        socket.Send(Encoding.ASCII.GetBytes(command + "\r\n"));
        _ = Task.Run(async () =>
        {
            // Closed after the server had time to read it.
            await Task.Delay(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
            socket.Dispose();
        });
    }

    public void Dispose()
    {
        Stop();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // best effort
        }
    }

    private string Log()
    {
        string path = Path.Combine(_dir, "redis.log");
        return File.Exists(path) ? File.ReadAllText(path) : "(no log)";
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static string? Find()
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/usr/sbin", "/usr/local/bin"]);
        return dirs.Select(d => Path.Combine(d, "redis-server")).FirstOrDefault(File.Exists);
    }
}

/// <summary>One redis-server for the tests that do not stop it (each uses its own key prefix); started on first use.</summary>
[SetUpFixture]
public sealed class SharedRedis
{
    private static RedisServer? _server;

    /// <summary>The shared server, started on first use.</summary>
    internal static RedisServer Server => _server ??= RedisServer.StartNew();

    /// <summary>Stops the shared server after the run.</summary>
    [OneTimeTearDown]
    public void StopShared()
    {
        _server?.Dispose();
        _server = null;
    }
}
