using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Queue.Contracts;
using Queue.Contracts.Jobs;

namespace Queue.Tests.Infrastructure;

/// <summary>Talks to the ingress the way a user would.</summary>
public sealed class JobClient(Uri baseAddress) : IDisposable
{
    public HttpClient Http { get; } = new() { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) };

    public async Task<string> SubmitAsync(object request)
    {
        var response = await Http.PostAsync("/jobs", JsonContent.Create(request));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"POST /jobs answered {(int)response.StatusCode}: {body}");
        var created = JsonSerializer.Deserialize(body, QueueJsonContext.Default.JobCreated)!;
        Assert.Equal($"/jobs/{created.Id}", response.Headers.Location?.OriginalString);
        return created.Id;
    }

    public async Task<JobView> GetAsync(string id) =>
        (await Http.GetFromJsonAsync($"/jobs/{id}", QueueJsonContext.Default.JobView))!;

    public async Task<JobDetails> GetDetailsAsync(string id) =>
        (await Http.GetFromJsonAsync($"/jobs/{id}?tasks=true", QueueJsonContext.Default.JobDetails))!;

    /// <summary>Polls until the job ends; fails the test with the job's state if it takes longer than <paramref name="timeout"/>.</summary>
    public async Task<JobView> WaitAsync(string id, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        JobView view;
        do
        {
            view = await GetAsync(id);
            if (view.Status.IsTerminal)
            {
                return view;
            }
            await Task.Delay(100);
        }
        while (DateTime.UtcNow < deadline);
        Assert.Fail($"Job {id} did not end within {timeout}: {JsonSerializer.Serialize(view.Status, QueueJsonContext.Default.JobStatus)}");
        return view;
    }

    /// <summary>Polls until the job's status meets <paramref name="condition"/>; fails the test if the job ends first or a minute passes.</summary>
    public async Task WaitUntilAsync(string id, Func<JobStatus, bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        JobStatus status;
        while (!condition(status = (await GetAsync(id)).Status))
        {
            Assert.False(status.IsTerminal, $"The job ended {status.State} before the condition held: {status.Error}");
            Assert.True(DateTime.UtcNow < deadline, "Timed out waiting for the job.");
            await Task.Delay(50);
        }
    }

    public async Task<List<string>> OutputAsync(string id)
    {
        var text = await Http.GetStringAsync($"/jobs/{id}/output");
        return SequentialReference.SortByKey(text.Split('\n'));
    }

    public void Dispose() => Http.Dispose();
}
