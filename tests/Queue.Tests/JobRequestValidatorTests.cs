using Queue.Contracts.Jobs;

namespace Queue.Tests;

public sealed class JobRequestValidatorTests
{
    private static RequestError? Check(JobRequest request) =>
        JobRequestValidator.TryCreateSpec(request, "job1", DateTimeOffset.UnixEpoch, out _);

    [Theory]
    [InlineData("../etc")]
    [InlineData("/abs")]
    [InlineData("books/../../x")]
    [InlineData("Books")]
    [InlineData("bo\u0001oks")]
    [InlineData("books/a\\b")]
    [InlineData("")]
    public void HostileOrMalformedInputsAreRejected(string input) =>
        Assert.Equal(400, Check(new JobRequest { App = "wordcount", Input = input })?.Status);

    [Theory]
    [InlineData(0)]
    [InlineData(10_001)]
    [InlineData(-5)]
    public void TaskCountsOutsideTheRangeAreRejected(int count)
    {
        Assert.Equal(400, Check(new JobRequest { App = "wordcount", Input = "books", MapTasks = count })?.Status);
        Assert.Equal(400, Check(new JobRequest { App = "wordcount", Input = "books", ReduceTasks = count })?.Status);
    }

    [Fact]
    public void AValidRequestBecomesASpecWithDefaults()
    {
        Assert.Null(JobRequestValidator.TryCreateSpec(new JobRequest { App = "wordcount", Input = "books/sub/dir" }, "j", DateTimeOffset.UnixEpoch, out var spec));
        Assert.Equal("books", spec!.InputContainer);
        Assert.Equal("sub/dir", spec.InputPrefix);
        Assert.Equal(1, spec.ReduceTasks);
        Assert.Equal(4, spec.MaxAttempts);
        Assert.Equal(JobRequestValidator.DefaultSplitSizeBytes, spec.SplitSizeBytes);
    }

    [Fact]
    public void MapTasksAndSplitSizeAreExclusive() =>
        Assert.Equal(400, Check(new JobRequest { App = "wordcount", Input = "books", MapTasks = 2, SplitSizeBytes = 4096 })?.Status);
}
