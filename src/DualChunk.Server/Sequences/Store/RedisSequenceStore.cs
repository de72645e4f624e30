using System.Globalization;
using StackExchange.Redis;

namespace DualChunk.Server.Sequences.Store;

/// <summary>
/// <see cref="ISequenceStore"/> on Redis (StackExchange.Redis). Per sequence two keys sharing the hash tag <c>{id}</c>:
/// <c>&lt;prefix&gt;{id}:seq</c>, a hash (generation, model, started, owner, spilled, positions, state, ended) with the
/// retention as its TTL, and <c>&lt;prefix&gt;{id}:lease</c>, the holder's <see cref="OwnerId"/> with the lease
/// duration as its TTL. Every operation that reads and writes is one Lua script, so it is atomic: a lease is taken only
/// if free or already ours, released only if still ours, and a write of an older generation is refused.
/// </summary>
/// <remarks>
/// The connection is made in the background and re-made after a failure; with Redis down an operation fails fast
/// (no queueing while disconnected) and at most after <see cref="SequenceStoreOptions.OperationTimeout"/>, as a
/// <see cref="StoreStatus.Unavailable"/> result, never an exception.
/// </remarks>
public sealed class RedisSequenceStore : ISequenceStore
{
    // KEYS[1] = record, KEYS[2] = lease. ARGV[1] = owner everywhere. Generations are decimal strings, compared as such.
    private const string HeldByOtherScript = """
        local holder = redis.call('GET', KEYS[2])
        if holder and holder ~= ARGV[1] then return {'held', holder} end
        """;

    // ARGV: owner, leaseMs, model, nowMs, retentionMs. A new generation above the old and the clock (monotonic even
    // after the record expired).
    private const string BeginScript = HeldByOtherScript + "\n" + """
        local old = tonumber(redis.call('HGET', KEYS[1], 'gen')) or 0
        local g = string.format('%.0f', math.max(old + 1, tonumber(ARGV[4])))
        redis.call('DEL', KEYS[1])
        redis.call('HSET', KEYS[1], 'gen', g, 'model', ARGV[3], 'started', ARGV[4], 'owner', ARGV[1])
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
        return {'ok', g}
        """;

    // ARGV: owner, leaseMs, nowMs, retentionMs. An ended sequence is returned without taking the lease.
    private const string AcquireScript = HeldByOtherScript + "\n" + """
        if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
        local r = redis.call('HMGET', KEYS[1], 'gen', 'model', 'started', 'owner', 'ended', 'spilled', 'positions', 'state')
        if r[5] then return {'ok', r[1] or '0', r[2], r[3], r[4], r[5], false, false, false} end
        local g = string.format('%.0f', math.max((tonumber(r[1]) or 0) + 1, tonumber(ARGV[3])))
        redis.call('HSET', KEYS[1], 'gen', g, 'owner', ARGV[1])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
        return {'ok', g, r[2], r[3], r[4], false, r[6], r[7], r[8]}
        """;

    // ARGV: owner, leaseMs, gen, state, positions, nowMs, model, retentionMs, release (1/0).
    private const string SpillScript = HeldByOtherScript + "\n" + """
        local gen = redis.call('HGET', KEYS[1], 'gen')
        if gen and gen ~= ARGV[3] then return {'fenced', gen} end
        redis.call('HSET', KEYS[1], 'gen', ARGV[3], 'state', ARGV[4], 'positions', ARGV[5], 'spilled', ARGV[6], 'owner', ARGV[1], 'model', ARGV[7])
        redis.call('HSETNX', KEYS[1], 'started', ARGV[6])
        redis.call('HDEL', KEYS[1], 'ended')
        redis.call('PEXPIRE', KEYS[1], ARGV[8])
        if ARGV[9] == '1' then
          if holder then redis.call('DEL', KEYS[2]) end
        else
          redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
        end
        return {'ok'}
        """;

    // ARGV: owner, leaseMs, gen, retentionMs.
    private const string RenewScript = HeldByOtherScript + "\n" + """
        local gen = redis.call('HGET', KEYS[1], 'gen')
        if gen and gen ~= ARGV[3] then return {'fenced', gen} end
        redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return {'ok'}
        """;

    // KEYS[1] = lease only. Compare-and-delete.
    private const string ReleaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
        return {'ok'}
        """;

    // ARGV: owner, gen, nowMs, retentionMs. The state goes; a record saying it ended stays.
    private const string EndScript = HeldByOtherScript + "\n" + """
        local r = redis.call('HMGET', KEYS[1], 'gen', 'model', 'started')
        if r[1] and r[1] ~= ARGV[2] then return {'fenced', r[1]} end
        redis.call('DEL', KEYS[1])
        redis.call('HSET', KEYS[1], 'gen', ARGV[2], 'ended', ARGV[3], 'owner', ARGV[1], 'model', r[2] or '', 'started', r[3] or ARGV[3])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        if holder then redis.call('DEL', KEYS[2]) end
        return {'ok'}
        """;

    private readonly SequenceStoreOptions _options;
    private readonly Task<ConnectionMultiplexer> _connection;
    private readonly TimeProvider _time;
    private readonly string _endpoint;
    private volatile bool _disposed;

    /// <summary>
    /// Creates the store and starts connecting in the background (the constructor does not wait for Redis: a replica
    /// starts and serves without it).
    /// </summary>
    /// <param name="options">The settings; <see cref="SequenceStoreOptions.Redis"/> must be set.</param>
    /// <param name="time">The clock for record times and generations (default the system's).</param>
    /// <exception cref="ArgumentException">A setting is out of range or the connection string does not parse (the message names it).</exception>
    public RedisSequenceStore(SequenceStoreOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (!options.IsConfigured)
            throw new ArgumentException($"{SequenceStoreOptions.Section}:Redis is not set; give a connection string such as 127.0.0.1:6379.", nameof(options));
        _options = options;
        _time = time ?? TimeProvider.System;
        OwnerId = options.OwnerId ?? $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid().ToString("N")[..8]}";
        ConfigurationOptions config;
        try
        {
            config = ConfigurationOptions.Parse(options.Redis!);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or RedisException)
        {
            throw new ArgumentException($"{SequenceStoreOptions.Section}:Redis '{options.Redis}' is not a StackExchange.Redis connection string ({e.Message}); e.g. 127.0.0.1:6379.", nameof(options), e);
        }
        if (config.EndPoints.Count == 0)
            throw new ArgumentException($"{SequenceStoreOptions.Section}:Redis '{options.Redis}' names no endpoint; e.g. 127.0.0.1:6379.", nameof(options));
        int timeoutMs = (int)options.OperationTimeout.TotalMilliseconds;
        config.AbortOnConnectFail = false;           // start without Redis; reconnect in the background
        config.BacklogPolicy = BacklogPolicy.FailFast; // while disconnected, fail at once rather than queue
        config.ConnectTimeout = timeoutMs;
        config.SyncTimeout = timeoutMs;
        config.AsyncTimeout = timeoutMs;
        config.ClientName ??= "dualchunk-server";
        _endpoint = string.Join(",", config.EndPoints.Select(e => e.ToString()));
        Description = $"redis {_endpoint}, prefix {options.KeyPrefix}";
        _connection = ConnectionMultiplexer.ConnectAsync(config);
    }

    /// <inheritdoc />
    public string OwnerId { get; }

    /// <inheritdoc />
    public TimeSpan Retention => _options.Retention;

    /// <inheritdoc />
    public TimeSpan LeaseDuration => _options.LeaseDuration;

    /// <inheritdoc />
    public string Description { get; }

    /// <summary>The record key of a sequence (for tests and operators: <c>redis-cli HGETALL</c>).</summary>
    public string RecordKey(string sequenceId) => _options.KeyPrefix + "{" + CheckId(sequenceId) + "}:seq";

    /// <summary>The lease key of a sequence.</summary>
    public string LeaseKey(string sequenceId) => _options.KeyPrefix + "{" + CheckId(sequenceId) + "}:lease";

    /// <inheritdoc />
    public Task<StoreResult> BeginAsync(string sequenceId, string model, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        RedisKey[] keys = [RecordKey(sequenceId), LeaseKey(sequenceId)];
        RedisValue[] args = [OwnerId, LeaseMs, model, NowMs(), RetentionMs];
        return Run("begin", sequenceId, async db =>
        {
            var r = await Script(db, BeginScript, keys, args).ConfigureAwait(false);
            return Status(r) ?? StoreResult.Ok(ParseLong(r[1]));
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<StoreResult<StoredSequence>> AcquireAsync(string sequenceId, CancellationToken cancellationToken = default)
    {
        RedisKey[] keys = [RecordKey(sequenceId), LeaseKey(sequenceId)];
        RedisValue[] args = [OwnerId, LeaseMs, NowMs(), RetentionMs];
        StoredSequence? record = null;
        var result = await Run("acquire", sequenceId, async db =>
        {
            var r = await Script(db, AcquireScript, keys, args).ConfigureAwait(false);
            if ((string?)r[0] == "missing")
                return new StoreResult(StoreStatus.NotFound, $"The store ({Description}) holds nothing for sequence '{sequenceId}'.");
            if (Status(r) is { } failed) return failed;
            record = new StoredSequence
            {
                Generation = ParseLong(r[1]),
                Model = (string?)r[2] ?? "",
                Started = Time(r[3]) ?? DateTimeOffset.UnixEpoch,
                LastOwner = (string?)r[4] ?? "",
                Ended = Time(r[5]),
                Spilled = Time(r[6]),
                Positions = r[7].IsNull ? 0 : (int)ParseLong(r[7]),
                Snapshot = r[8].IsNull ? null : (byte[]?)r[8],
            };
            return StoreResult.Ok(record.Generation);
        }, cancellationToken).ConfigureAwait(false);
        return result.IsOk ? new StoreResult<StoredSequence>(StoreStatus.Ok, "", record) : StoreResult<StoredSequence>.From(result);
    }

    /// <inheritdoc />
    public Task<StoreResult> SpillAsync(string sequenceId, long generation, string model, ReadOnlyMemory<byte> snapshot, int positions, bool releaseLease,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        if (snapshot.Length > _options.MaxSnapshotBytes)
            return Task.FromResult(new StoreResult(StoreStatus.TooLarge, string.Create(CultureInfo.InvariantCulture,
                $"Sequence '{sequenceId}': its snapshot is {snapshot.Length:N0} bytes, over the store's {_options.MaxSnapshotBytes:N0} ({SequenceStoreOptions.Section}:MaxSnapshotBytes).")));
        RedisKey[] keys = [RecordKey(sequenceId), LeaseKey(sequenceId)];
        RedisValue[] args = [OwnerId, LeaseMs, Gen(generation), snapshot, positions, NowMs(), model, RetentionMs, releaseLease ? 1 : 0];
        return Run("spill", sequenceId, async db => Status(await Script(db, SpillScript, keys, args).ConfigureAwait(false)) ?? StoreResult.Ok(generation),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<StoreResult> RenewAsync(string sequenceId, long generation, CancellationToken cancellationToken = default)
    {
        RedisKey[] keys = [RecordKey(sequenceId), LeaseKey(sequenceId)];
        RedisValue[] args = [OwnerId, LeaseMs, Gen(generation), RetentionMs];
        return Run("renew", sequenceId, async db => Status(await Script(db, RenewScript, keys, args).ConfigureAwait(false)) ?? StoreResult.Ok(generation),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<StoreResult> ReleaseAsync(string sequenceId, CancellationToken cancellationToken = default)
    {
        RedisKey[] keys = [LeaseKey(sequenceId)];
        RedisValue[] args = [OwnerId];
        return Run("release", sequenceId, async db => Status(await Script(db, ReleaseScript, keys, args).ConfigureAwait(false)) ?? StoreResult.Ok(),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<StoreResult> EndAsync(string sequenceId, long generation, CancellationToken cancellationToken = default)
    {
        RedisKey[] keys = [RecordKey(sequenceId), LeaseKey(sequenceId)];
        RedisValue[] args = [OwnerId, Gen(generation), NowMs(), RetentionMs];
        return Run("end", sequenceId, async db => Status(await Script(db, EndScript, keys, args).ConfigureAwait(false)) ?? StoreResult.Ok(generation),
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<StoreResult> PingAsync(CancellationToken cancellationToken = default)
        => Run("ping", null, async db =>
        {
            await db.PingAsync().ConfigureAwait(false);
            return StoreResult.Ok();
        }, cancellationToken);

    /// <summary>Closes the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            var connection = await _connection.WaitAsync(_options.OperationTimeout).ConfigureAwait(false);
            await connection.CloseAsync(allowCommandsToComplete: false).ConfigureAwait(false);
            await connection.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or RedisException or ObjectDisposedException)
        {
            // Closing a connection that never came up: nothing to release.
        }
    }

    private RedisValue LeaseMs => (long)_options.LeaseDuration.TotalMilliseconds;

    private RedisValue RetentionMs => (long)_options.Retention.TotalMilliseconds;

    private RedisValue NowMs() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private static RedisValue Gen(long generation) => generation.ToString(CultureInfo.InvariantCulture);

    private static string CheckId(string sequenceId)
    {
        ArgumentException.ThrowIfNullOrEmpty(sequenceId);
        return sequenceId;
    }

    private static async Task<RedisResult[]> Script(IDatabase db, string script, RedisKey[] keys, RedisValue[] args)
        => (RedisResult[]?)await db.ScriptEvaluateAsync(script, keys, args).ConfigureAwait(false)
           ?? throw new RedisException("The store's script returned no array.");

    // The failure a script reported ({'held', holder} or {'fenced', generation}), or null for {'ok', ...}.
    private static StoreResult? Status(RedisResult[] r) => (string?)r[0] switch
    {
        "ok" => null,
        "held" => new StoreResult(StoreStatus.HeldByOther, $"The sequence is active on another replica ({(string?)r[1]}); retry, or route to that replica.", 0, (string?)r[1]),
        "fenced" => new StoreResult(StoreStatus.Fenced, $"Another replica resumed the sequence since (generation {(string?)r[1]}); this replica's copy is stale."),
        var other => throw new RedisException($"The store's script answered '{other}'."),
    };

    private static long ParseLong(RedisResult value)
        => long.TryParse((string?)value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) ? n
            : throw new RedisException($"The store holds '{(string?)value}' where a number belongs.");

    private static DateTimeOffset? Time(RedisResult value) => value.IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds(ParseLong(value));

    // One operation: connection and command bounded by the timeout together; every failure of the store a result.
    private async Task<StoreResult> Run(string operation, string? sequenceId, Func<IDatabase, Task<StoreResult>> body, CancellationToken cancellationToken)
    {
        string what = sequenceId is null ? operation : $"{operation} of sequence '{sequenceId}'";
        if (_disposed) return Unavailable($"The store ({Description}) is closed: the server is shutting down ({what}).");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.OperationTimeout);
        try
        {
            var connection = await _connection.WaitAsync(timeout.Token).ConfigureAwait(false);
            return await body(connection.GetDatabase()).WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return Unavailable(string.Create(CultureInfo.InvariantCulture,
                $"The store ({Description}) did not answer the {what} within {_options.OperationTimeout.TotalMilliseconds:0} ms."));
        }
        catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException or InvalidOperationException)
        {
            return Unavailable($"The store ({Description}) failed the {what}: {e.GetType().Name}: {Brief(e.Message)}");
        }
    }

    private static StoreResult Unavailable(string message) => new(StoreStatus.Unavailable, message);

    // StackExchange.Redis appends a long dump of connection state after the reason: keep the reason.
    private static string Brief(string message)
    {
        int end = message.IndexOfAny(['\r', '\n', ';']);
        if (end >= 0) message = message[..end];
        return message.Length <= 300 ? message : message[..300] + "...";
    }
}
