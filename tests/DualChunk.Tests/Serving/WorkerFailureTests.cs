using DualChunk.Core;

namespace DualChunk.Tests.Serving;

/// <summary>
/// A failure inside a call's work reaches the caller as the exception that was thrown, whichever thread threw it
/// (it was an <see cref="AggregateException"/> when a helper thread threw, the exception itself on one thread).
/// </summary>
[TestFixture]
public sealed class WorkerFailureTests
{
    private const int Items = 64;

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(4)]
    public void AFailureInAnyThreadIsRethrownAsItselfWithItsStack(int threads)
    {
        using var group = new WorkerGroup(4, allowSpinning: true);
        var work = new FailingWork(failOnHelper: threads > 1);
        var ex = Assert.Throws<InvalidDataException>(() => group.Run(work, Items, threads));
        Assert.Multiple(() =>
        {
            Assert.That(ex!.Message, Is.EqualTo(FailingWork.Message));
            Assert.That(ex.StackTrace, Does.Contain(nameof(FailingWork.Execute)), "the original stack is kept");
            Assert.That(work.FailedOn, threads > 1 ? Is.GreaterThan(0) : Is.Zero, "the failure was injected where intended");
        });

        // The group still works after a failed phase.
        var counting = new CountingWork();
        group.Run(counting, Items, threads);
        Assert.That(counting.Count, Is.EqualTo(Items));
    }

    /// <summary>
    /// Throws from the first item a helper runs (or, on one thread, from item 3). The caller's slot waits (bounded)
    /// until a helper has run an item, so with helpers the failure surely happens on one of them.
    /// </summary>
    private sealed class FailingWork(bool failOnHelper) : IParallelWork
    {
        public const string Message = "injected failure";
        private int _helperRan;

        public int FailedOn { get; private set; } = -1;

        public void Execute(int item, int worker)
        {
            if (failOnHelper)
            {
                if (worker == 0)
                {
                    var deadline = DateTime.UtcNow.AddSeconds(10);
                    while (Volatile.Read(ref _helperRan) == 0 && DateTime.UtcNow < deadline) Thread.Yield();
                    return;
                }
                if (Interlocked.Exchange(ref _helperRan, 1) != 0) return;
            }
            else if (item != 3)
            {
                return;
            }
            FailedOn = worker;
            throw new InvalidDataException(Message);
        }
    }

    private sealed class CountingWork : IParallelWork
    {
        private int _count;

        public int Count => Volatile.Read(ref _count);

        public void Execute(int item, int worker) => Interlocked.Increment(ref _count);
    }
}
